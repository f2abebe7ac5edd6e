"""Token helpers on the model, under TransformerLens's names (``model.to_tokens(...)`` and the rest).

They tokenize exactly as a trace over the same prompts does: the model's tokenizer with its own
special tokens (a BOS where that tokenizer adds one, none where it does not), prompts of a batch
padded on the left. ``prepend_bos=True`` / ``False`` add or remove the BOS on top of that;
the default ``None`` leaves it as the tokenizer (and so every trace) has it. TransformerLens's
default instead always prepends one; on a tokenizer that adds none (GPT-2's) the two differ.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Sequence, Union, cast

import torch

from ..errors import InputError, InputTypeError, PositionError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from .accessors import SavableTensor

TokensInput = Union[str, Sequence[str]]


class TokenHelpers:
    """Mixin of :class:`~nnspec.StandardizedTransformer`: tokenizing, decoding, and ``test_prompt``."""

    if TYPE_CHECKING:  # provided by the model class this mixes into
        tokenizer: PreTrainedTokenizerBase
        vocab_size: int
        dispatched: bool
        _module: torch.nn.Module

        @property
        def logits(self) -> SavableTensor: ...

        def trace(self, *inputs: Any, **kwargs: Any) -> Any: ...

    # -- encoding ---------------------------------------------------------------------------------

    def _token_ids(self, text: str, prepend_bos: Optional[bool], label: str) -> list[int]:
        """One prompt's ids as a trace feeds them, with the BOS added or removed as asked."""
        if not isinstance(text, str):
            raise InputTypeError(f"{label}: expected a string, got {type(text).__name__}")
        if prepend_bos is not None and not isinstance(prepend_bos, bool):
            raise InputTypeError(f"prepend_bos: expected None, True or False, got {prepend_bos!r}")
        tokenizer = self.tokenizer
        ids = list(tokenizer(text)["input_ids"])
        if prepend_bos is None:
            return ids
        bos = tokenizer.bos_token_id
        if bos is None:
            if prepend_bos:
                raise InputError("prepend_bos=True: this model's tokenizer has no BOS token (tokenizer.bos_token_id is None)")
            return ids
        added = bool(ids) and ids[0] == bos and list(tokenizer(text, add_special_tokens=False)["input_ids"])[:1] != [bos]
        if prepend_bos and not (ids and ids[0] == bos):
            return [bos] + ids
        if not prepend_bos and added:
            return ids[1:]
        return ids

    def to_tokens(
        self,
        input: TokensInput,
        prepend_bos: Optional[bool] = None,
        padding_side: Optional[str] = None,
        move_to_device: bool = True,
        truncate: bool = True,
    ) -> torch.Tensor:
        """Token ids of ``input`` (a prompt or a list of prompts), ``(batch, seq)`` long, as a trace
        over the same prompts feeds them (``model.input_ids``): padded on ``padding_side``
        (default ``"left"``, as traces pad) with the tokenizer's pad token. ``prepend_bos``: None
        keeps the tokenizer's own BOS handling, True / False add / remove a leading BOS.
        ``truncate``: cut inputs longer than a learned position table to its length."""
        prompts = [input] if isinstance(input, str) else input
        if not isinstance(prompts, (list, tuple)) or not prompts:
            raise InputTypeError(f"to_tokens(input=...): expected a string or a non-empty list of strings, got {input!r}")
        side = "left" if padding_side is None else padding_side
        if side not in ("left", "right"):
            raise InputError(f"to_tokens(padding_side={padding_side!r}): expected 'left' or 'right'")
        rows = [self._token_ids(p, prepend_bos, f"to_tokens(input[{i}])") for i, p in enumerate(prompts)]
        limit = getattr(self, "_position_limit", None)
        if truncate and limit is not None:
            rows = [row[:limit] for row in rows]
        width = max(len(row) for row in rows)
        if width == 0:
            raise InputError("to_tokens: the input gives no tokens")
        pad = self.tokenizer.pad_token_id
        if pad is None and any(len(row) != width for row in rows):
            raise InputError("to_tokens: prompts of different lengths need a pad token, and this tokenizer has none")
        padded = [([pad] * (width - len(row)) + row) if side == "left" else (row + [pad] * (width - len(row))) for row in rows]
        tokens = torch.tensor(padded, dtype=torch.long)
        if move_to_device and self.dispatched:  # the weights' device (a model not loaded yet is on meta)
            tokens = tokens.to(next(self._module.parameters()).device)
        return tokens

    def to_str_tokens(
        self,
        input: Union[str, Sequence[str], torch.Tensor, Sequence[int]],
        prepend_bos: Optional[bool] = None,
        padding_side: Optional[str] = None,
    ) -> Union[list[str], list[list[str]]]:
        """Each token of ``input`` as a string: a prompt (tokenized as :meth:`to_tokens`), a list of
        prompts (a list per prompt, unpadded), or token ids (``(seq,)``, ``(1, seq)``, a list of ints)."""
        if isinstance(input, str):
            ids = self._token_ids(input, prepend_bos, "to_str_tokens(input)")
            return self._decode_each(ids)
        if isinstance(input, torch.Tensor):
            if input.ndim == 2 and input.shape[0] == 1:
                input = input[0]
            if input.ndim != 1 or input.dtype.is_floating_point:
                raise InputTypeError(f"to_str_tokens: expected token ids (seq,) or (1, seq), got {input.dtype} {tuple(input.shape)}")
            return self._decode_each(input.tolist())
        if isinstance(input, (list, tuple)) and input and all(isinstance(t, int) and not isinstance(t, bool) for t in input):
            return self._decode_each(list(input))
        if isinstance(input, (list, tuple)) and input and all(isinstance(t, str) for t in input):
            return cast("list[list[str]]", [self.to_str_tokens(p, prepend_bos, padding_side) for p in input])
        raise InputTypeError(
            f"to_str_tokens(input=...): expected a string, a list of strings, or token ids, got {type(input).__name__}"
        )

    def _decode_each(self, ids: list[int]) -> list[str]:
        self._check_ids(ids, "token ids")
        return [self.tokenizer.decode([i], clean_up_tokenization_spaces=False) for i in ids]

    def _check_ids(self, ids: list[int], label: str) -> None:
        bad = [i for i in ids if not 0 <= int(i) < self.vocab_size]
        if bad:
            raise InputError(f"{label}: {bad[0]} is outside the vocabulary (valid: 0..{self.vocab_size - 1})")

    def to_string(self, tokens: Union[torch.Tensor, Sequence[int], int]) -> Union[str, list[str]]:
        """Decode token ids: ``(seq,)`` or a list of ints -> one string, ``(batch, seq)`` -> a list."""
        if isinstance(tokens, int) and not isinstance(tokens, bool):
            tokens = [tokens]
        if isinstance(tokens, torch.Tensor):
            if tokens.dtype.is_floating_point or tokens.ndim > 2:
                raise InputTypeError(f"to_string: expected token ids (seq,) or (batch, seq), got {tokens.dtype} {tuple(tokens.shape)}")
            if tokens.ndim == 2:
                return [self.to_string(row) for row in tokens]  # type: ignore[misc]
            tokens = tokens.reshape(-1).tolist()
        if not isinstance(tokens, (list, tuple)) or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
            raise InputTypeError(f"to_string: expected token ids (a tensor or a list of ints), got {tokens!r}")
        self._check_ids(list(tokens), "to_string")
        return self.tokenizer.decode(list(tokens), clean_up_tokenization_spaces=False)

    def to_single_token(self, string: str) -> int:
        """The id of ``string``, which must be exactly one token (tokenized without special tokens)."""
        if not isinstance(string, str):
            raise InputTypeError(f"to_single_token: expected a string, got {type(string).__name__}")
        ids = list(self.tokenizer(string, add_special_tokens=False)["input_ids"])
        if len(ids) != 1:
            pieces = [self.tokenizer.decode([i], clean_up_tokenization_spaces=False) for i in ids]
            raise InputError(
                f"to_single_token({string!r}): it is {len(ids)} tokens, not one ({pieces}); pass one token's text"
            )
        return int(ids[0])

    def to_single_str_token(self, int_token: int) -> str:
        """The text of token id ``int_token``."""
        if isinstance(int_token, torch.Tensor) and int_token.numel() == 1:
            int_token = int(int_token)
        if isinstance(int_token, bool) or not isinstance(int_token, int):
            raise InputTypeError(f"to_single_str_token: expected a token id, got {int_token!r}")
        return self._decode_each([int_token])[0]

    def get_token_position(
        self,
        single_token: Union[str, int],
        input: Union[str, torch.Tensor],
        mode: str = "first",
        prepend_bos: Optional[bool] = None,
        padding_side: Optional[str] = None,
    ) -> int:
        """Where ``single_token`` (a one-token string or an id) occurs in ``input`` (a prompt,
        tokenized as :meth:`to_tokens`, or ids ``(seq,)`` / ``(1, seq)``): its ``"first"`` or
        ``"last"`` position. Raises :class:`~nnspec.errors.PositionError` when it does not occur."""
        if mode not in ("first", "last"):
            raise InputError(f"get_token_position(mode={mode!r}): expected 'first' or 'last'")
        if isinstance(single_token, str):
            token = self.to_single_token(single_token)
        elif isinstance(single_token, int) and not isinstance(single_token, bool):
            token = single_token
        else:
            raise InputTypeError(f"get_token_position(single_token=...): expected a string or a token id, got {single_token!r}")
        if isinstance(input, str):
            ids = self.to_tokens(input, prepend_bos, padding_side, move_to_device=False)[0]
        elif isinstance(input, torch.Tensor):
            if input.ndim == 2 and input.shape[0] == 1:
                input = input[0]
            if input.ndim != 1:
                raise InputError(f"get_token_position: input ids must be (seq,) or (1, seq), got {tuple(input.shape)}")
            ids = input
        else:
            raise InputTypeError(f"get_token_position(input=...): expected a string or token ids, got {type(input).__name__}")
        where = (ids.cpu() == token).nonzero().flatten().tolist()
        if not where:
            raise PositionError(f"get_token_position: token {token} ({self.to_single_str_token(token)!r}) does not occur in the input")
        return where[0] if mode == "first" else where[-1]

    # -- a quick look at one prompt ----------------------------------------------------------------

    def test_prompt(
        self,
        prompt: str,
        answer: Union[str, Sequence[str]],
        prepend_space_to_answer: bool = True,
        print_details: bool = True,
        prepend_bos: Optional[bool] = None,
        top_k: int = 10,
    ) -> None:
        """Run ``prompt`` followed by ``answer`` and print, for each answer token, its rank, logit and
        probability at the position before it, and the ``top_k`` tokens there (``print_details``),
        then the ranks of the answer tokens. ``answer`` may be a list (each tried after the prompt)."""
        answers = [answer] if isinstance(answer, str) else list(answer) if isinstance(answer, (list, tuple)) else None
        if not answers or not all(isinstance(a, str) and a for a in answers):
            raise InputTypeError(f"test_prompt(answer=...): expected a non-empty string or a list of them, got {answer!r}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 0 <= top_k <= self.vocab_size:
            raise InputError(f"test_prompt(top_k={top_k!r}): expected 0..{self.vocab_size}")
        prompt_ids = self._token_ids(prompt, prepend_bos, "test_prompt(prompt)")
        if not prompt_ids:
            raise InputError("test_prompt(prompt=...): the prompt gives no tokens, so no position predicts the answer")
        for text in answers:
            if prepend_space_to_answer and not text.startswith(" "):
                text = " " + text
            answer_ids = self._token_ids(text, False, "test_prompt(answer)")
            special = set(self.tokenizer.all_special_ids)
            answer_ids = [i for i in answer_ids if i not in special] or answer_ids
            tokens = torch.tensor([prompt_ids + answer_ids], dtype=torch.long)
            prompt_str, answer_str = self._decode_each(prompt_ids), self._decode_each(answer_ids)
            if print_details:
                print("Tokenized prompt:", prompt_str)
                print("Tokenized answer:", answer_str)
            with torch.no_grad(), self.trace(tokens):
                saved = self.logits.save()
            logits = saved[0].float().cpu()
            probs = logits.softmax(-1)
            ranks = []
            for k, token in enumerate(answer_ids):
                at = len(prompt_ids) + k - 1
                order = probs[at].argsort(descending=True)
                rank = int((order == token).nonzero()[0])
                ranks.append((answer_str[k], rank))
                if print_details:
                    print("Performance on answer token:")
                    print(f"Rank: {rank: <8} Logit: {logits[at, token].item():5.2f} Prob: {probs[at, token].item():6.2%} "
                          f"Token: |{answer_str[k]}|")
                    for i in range(top_k):
                        best = int(order[i])
                        print(f"Top {i}th token. Logit: {logits[at, best].item():5.2f} Prob: {probs[at, best].item():6.2%} "
                              f"Token: |{self.to_single_str_token(best)}|")
            print(f"Ranks of the answer tokens: {ranks}")
