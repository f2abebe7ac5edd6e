"""Freeing what a forward stopped early leaves behind.

``tracer.stop()`` ends the model's forward by raising an exception through it. NNsight holds that
exception in a local variable of the frame that raises it, and the exception's traceback refers
back to that frame, so the exception, its traceback and every frame of the interrupted forward form
a reference cycle. Those frames hold the forward's locals: hidden states, masks, position
embeddings, the batch's inputs. Reference counting cannot free a cycle; the cyclic garbage
collector does, but only when enough new objects have been allocated since its last run, so in a
loop of stopped traces one or two batches' worth of activations stay alive next to the batch being
computed. Collecting the young generations right after the trace frees them at once.
"""

from __future__ import annotations

import gc


def free_stopped_forward() -> None:
    """Free the frames of a forward that ``tracer.stop()`` interrupted (call it after the trace).

    A collection of the two young generations only: the cycle is new, so it is there, and such a
    collection takes well under a millisecond once the process's long-lived objects have been
    promoted to the old generation (a full collection of a process with a loaded model and NNsight
    takes hundreds of milliseconds).
    """
    gc.collect(1)


__all__ = ["free_stopped_forward"]
