"""Plots: each figure drawn from a real run and read back (cell labels, colours, hover lists, axis
ticks, attention values) against plain transformers; token display against the prompt text itself;
missing plotting libraries and bad input refused before the model runs."""

from __future__ import annotations

import html
import json
import re
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from nnspec import StandardizedTransformer
from nnspec.errors import CapabilityUnavailableError, InputError, InputTypeError, LayerIndexError, ShapeMismatchError
from nnspec.interventions import TargetPrompt, logit_lens
from nnspec.prompt_utils import Prompt, run_prompts

from .conftest import checkpoint

pytest.importorskip("matplotlib")
pytest.importorskip("plotly")

from nnspec.display import (  # noqa: E402
    attention_pattern_view,
    display_token,
    lens_figure,
    lens_grid,
    plot_category_probs,
    plot_category_probs_plotly,
    plot_logit_lens,
    plot_logit_lens_plotly,
    plot_patchscope_lens_plotly,
    token_text,
    visible_text,
    write_lens_html,
)

PROMPT = "The capital of France is\tParis,  a city"
NORMS = {"gpt2": lambda hf: hf.transformer.ln_f, "llama": lambda hf: hf.model.norm}


@pytest.fixture(scope="module")
def gpt2():
    path = checkpoint("gpt2")
    return StandardizedTransformer(path), AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager")


@pytest.fixture(scope="module")
def llama():
    path = checkpoint("llama")
    return StandardizedTransformer(path), AutoModelForCausalLM.from_pretrained(path)


def hf_lens(hf, name: str, tokenizer, prompt: str) -> torch.Tensor:
    """Logit-lens probabilities ``(layers, seq, vocab)`` from plain transformers: each block's
    output through the final norm and the unembedding (HF's last hidden state is already normed)."""
    with torch.no_grad():
        out = hf(**tokenizer(prompt, return_tensors="pt"), output_hidden_states=True)
        states = out.hidden_states[1:-1]
        logits = [hf.get_output_embeddings()(NORMS[name](hf)(h)) for h in states] + [out.logits]
    return torch.cat(logits, 0).softmax(-1)


def hf_text(tokenizer, token_id: int) -> str:
    """A gpt2 token's text: byte-level decoding keeps every space, so plain ``decode`` is exact."""
    return tokenizer.decode([token_id])


def wcag_contrast(a: str, b: str) -> float:
    def lum(colour: str) -> float:
        channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    high, low = sorted((lum(a), lum(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


# -- token display ----------------------------------------------------------------------------------


def test_visible_text_by_hand() -> None:
    assert visible_text(" a\tb\nc\r\\") == "␣a\\tb\\nc\\r\\\\"
    assert visible_text("") == "∅" and visible_text("café €") == "café␣€"
    assert visible_text("\x00\u200b") == "\\x00\\u200b"
    with pytest.raises(InputTypeError, match="not a string"):
        visible_text(3)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_decoded_tokens_spell_the_prompt(name: str, gpt2, llama) -> None:
    """The decoded texts of a prompt's tokens concatenate back to the prompt: the ground truth is the
    prompt itself (sentencepiece decoders drop a first token's leading space; that must not happen)."""
    model = (gpt2 if name == "gpt2" else llama)[0]
    prompt = "The capital  of France is Paris" if name == "llama" else PROMPT  # the tiny llama has no tab
    grid = lens_grid(model, prompt, k=2)
    texts = [t for t, i in zip(grid["texts"], grid["token_ids"]) if i not in model.tokenizer.all_special_ids]
    assert "".join(texts) == (" " + prompt if name == "llama" else prompt)  # sentencepiece's dummy prefix space
    assert all(label.strip() for label in map(visible_text, grid["texts"])), "a label is blank"
    if name == "llama":
        space = model.tokenizer.convert_tokens_to_ids("▁")
        assert display_token("▁Paris", model.tokenizer) == "␣Paris" and display_token(space, model) == "␣"
    else:
        assert display_token("ĉ", model.tokenizer) == "\\t" and display_token("ĉ") == "\\t"
        assert grid["tokens"][grid["texts"].index("\t")] == "ĉ"


@pytest.fixture(scope="module")
def accented() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer whose vocabulary holds merged non-ASCII entries (``cafÃ©``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(["café crème déjà vu, 5€ le café"] * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def test_non_ascii_tokens_show_their_text(accented, gpt2) -> None:
    entries = [e for e in accented.get_vocab() if "Ã©" in e]
    assert entries, "the trained vocabulary merges é"
    for entry in entries:
        text = token_text(accented, entry)
        assert "é" in text and "Ã" not in text and text == accented.decode([accented.convert_tokens_to_ids(entry)])
    # In a plot: the tiny gpt2 run with this tokenizer (its ids fit the 384-entry vocabulary).
    model = StandardizedTransformer(checkpoint("gpt2"), tokenizer=accented)
    fig = plot_logit_lens_plotly(model, " le café", k=2)
    ticks = [html.unescape(t) for t in fig.layout.xaxis.ticktext]
    assert "".join(ticks).replace("␣", " ") == " le café" and any("é" in t for t in ticks)
    assert not any("Ã" in t for t in ticks)


# -- logit lens: PNG, HTML, plotly ------------------------------------------------------------------


def test_png_cells_are_the_hf_lens(gpt2, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib

    model, hf = gpt2
    backend = matplotlib.rcParams._get_backend_or_none()
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)  # pyplot's global state is never touched
    monkeypatch.setattr(matplotlib, "use", lambda *a, **k: pytest.fail("the plot switched the matplotlib backend"))
    fig = plot_logit_lens(model, PROMPT, path=tmp_path / "lens.png", html_path=tmp_path / "lens.html")
    assert (tmp_path / "lens.png").read_bytes()[:4] == b"\x89PNG"
    assert matplotlib.rcParams._get_backend_or_none() == backend
    probs = hf_lens(hf, "gpt2", model.tokenizer, PROMPT)  # (layers, seq, vocab)
    ax, colorbar = fig.axes
    cells = {(round(t.get_position()[0]), round(t.get_position()[1])): t for t in ax.texts}
    assert len(cells) == probs.shape[0] * probs.shape[1]
    for (p, l), text in cells.items():
        label, value = text.get_text().split("\n")
        best = int(probs[l, p].argmax())
        assert label == visible_text(hf_text(model.tokenizer, best)) and label.strip()
        assert value == f"{probs[l, p].max():.2f}"
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    ids = model.tokenizer(PROMPT)["input_ids"]
    assert ticks == [visible_text(hf_text(model.tokenizer, i)) for i in ids] and "\\t" in ticks and "␣" in ticks
    # The colour bar sits next to the heatmap, not far to its right.
    fig.canvas.draw()
    gap = colorbar.get_position().x0 - ax.get_position().x1
    assert 0 <= gap < 0.02, gap


def test_html_page_has_legend_topk_and_readable_text(gpt2, tmp_path: Path) -> None:
    model, hf = gpt2
    k = 4
    plot_logit_lens(model, PROMPT, html_path=tmp_path / "lens.html", k=k)
    page = (tmp_path / "lens.html").read_text(encoding="utf-8")
    assert "<script src" not in page and "http" not in page, "the page is self-contained"
    assert re.search(r"class='legend'>[^<]*0 <span class='bar' style='background:linear-gradient\(to right, #440154 0\.0%.*#fde725 100\.0%\)'", page)
    probs = hf_lens(hf, "gpt2", model.tokenizer, PROMPT)
    cells = re.findall(r"<td data-layer='(\d+)' data-position='(\d+)'[^>]*>(.*?)</td>", page)
    assert len(cells) == probs.shape[0] * probs.shape[1]
    for layer, position, body in cells:
        expected = [visible_text(hf_text(model.tokenizer, int(i))) for i in probs[int(layer), int(position)].topk(k).indices]
        listed = re.findall(r"<li><span class='tok'>(.*?)</span>", body)
        assert [html.unescape(t) for t in listed] == expected
        assert body.startswith("<details><summary>")
    header = [html.unescape(t) for t in re.findall(r"<th><small>\d+</small><br><span class='tok'>(.*?)</span>", page)]
    assert "\\t" in header and all(h.strip() for h in header)


def test_html_text_contrasts_with_every_background(tmp_path: Path) -> None:
    """Backgrounds from dark (low probability) to bright (high): text stays readable on each."""
    values = [i / 10 for i in range(11)]
    grid = {
        "layers": [0],
        "tokens": [f"t{i}" for i in range(len(values))],
        "top": [[[("Ġa", v), ("b", 0.0)] for v in values]],
    }
    write_lens_html(grid, tmp_path / "g.html")
    page = (tmp_path / "g.html").read_text(encoding="utf-8")
    styles = re.findall(r"style='background:(#[0-9a-f]{6});color:(#[0-9a-f]{6})'", page)
    assert len(styles) == len(values) and len({bg for bg, _ in styles}) == len(values)
    assert {fg for _, fg in styles} == {"#000000", "#ffffff"}
    for background, text in styles:
        assert wcag_contrast(background, text) >= 4.5, (background, text)
    assert "<span class='tok'>␣a</span>" in page  # a grid without decoded text: the entry read as byte-level


def test_plotly_lens_text_and_hover(gpt2, tmp_path: Path) -> None:
    model, hf = gpt2
    fig = plot_logit_lens_plotly(model, PROMPT, layers=[2, 0], k=3, html_path=tmp_path / "lens.html")
    probs = hf_lens(hf, "gpt2", model.tokenizer, PROMPT)[[2, 0]]
    heat = fig.data[0]
    assert torch.allclose(torch.tensor(heat.z), probs.max(-1).values, atol=1e-5)
    for r in range(probs.shape[0]):
        for c in range(probs.shape[1]):
            top = probs[r, c].topk(3).indices.tolist()
            assert html.unescape(heat.text[r][c]) == visible_text(hf_text(model.tokenizer, top[0]))
            hover = html.unescape(heat.hovertext[r][c])
            for rank, i in enumerate(top):
                assert f"{rank + 1}. {visible_text(hf_text(model.tokenizer, i))}  " in hover
    assert list(fig.layout.yaxis.ticktext) == ["2", "0"]
    written = (tmp_path / "lens.html").read_text(encoding="utf-8")
    assert "<html>" in written and "plotly.js" in written and "cdn.plot.ly" not in written.split("<body>")[1][:2000]


def test_plotly_patchscope_matches_hooked_hf(gpt2) -> None:
    model, hf = gpt2
    sources, target, layers = ["Hello world", "The capital of France is"], TargetPrompt("The capital of Spain is", 3), [0, 1]
    fig = plot_patchscope_lens_plotly(model, sources, target, layers=layers, k=2)
    tok = model.tokenizer
    with torch.no_grad():
        states = [hf(**tok(s, return_tensors="pt"), output_hidden_states=True).hidden_states for s in sources]
        for row, layer in enumerate(layers):
            for col, hidden in enumerate(states):
                def patch(module, args, output, h=hidden[layer + 1][0, -1]):
                    first = output[0] if isinstance(output, tuple) else output
                    first[0, target.index_to_patch] = h

                handle = hf.transformer.h[layer].register_forward_hook(patch)
                try:
                    expected = hf(**tok(target.prompt, return_tensors="pt")).logits[0, -1].softmax(-1)
                finally:
                    handle.remove()
                assert abs(fig.data[0].z[row][col] - float(expected.max())) < 1e-5
                assert html.unescape(fig.data[0].text[row][col]) == visible_text(hf_text(tok, int(expected.argmax())))
    assert [html.unescape(t) for t in fig.layout.xaxis.ticktext] == ["Hello␣world", "The␣capital␣of␣France␣is"]


# -- categories -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def categories(gpt2):
    model, _ = gpt2
    prompts = [
        Prompt.from_strings(text, {"target": "Paris", "other": ["Rome", "London"]}, model.tokenizer)
        for text in ("The capital of France is", "Hello", "I live in")
    ]
    return run_prompts(model, prompts, get_probs_func=logit_lens), run_prompts(model, prompts)


def test_category_png_has_integer_layer_ticks(categories, tmp_path: Path) -> None:
    per_layer, final = categories
    fig = plot_category_probs(per_layer, tmp_path / "c.png")
    ax = fig.axes[0]
    low, high = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if low <= t <= high]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks
    means = {line.get_label(): list(line.get_ydata()) for line in ax.lines}
    for name, values in per_layer.items():
        assert torch.allclose(torch.tensor(means[name], dtype=torch.float64), values.mean(0).double(), atol=1e-6)
    bars = plot_category_probs(final, tmp_path / "b.png").axes[0].patches
    assert [round(b.get_height(), 6) for b in bars] == [round(float(v.mean()), 6) for v in final.values()]


def test_category_plotly_lines_band_and_ticks(categories, tmp_path: Path) -> None:
    per_layer, final = categories
    fig = plot_category_probs_plotly(per_layer, layers=[0, 1, 2], html_path=tmp_path / "c.html")
    lines = {t.name: t for t in fig.data if t.mode == "lines+markers"}
    assert set(lines) == set(per_layer)
    for name, values in per_layer.items():
        assert list(lines[name].x) == [0, 1, 2]
        assert torch.allclose(torch.tensor(lines[name].y, dtype=torch.float64), values.mean(0).double(), atol=1e-6)
        band = next(t for t in fig.data if t.fill == "toself" and t.legendgroup == name)
        assert max(band.y) == pytest.approx(float((values.mean(0) + values.std(0)).max()), abs=1e-6)
    assert list(fig.layout.xaxis.tickvals) == [0, 1, 2] and fig.layout.xaxis.tickformat == "d"
    assert (tmp_path / "c.html").stat().st_size > 100_000
    bars = plot_category_probs_plotly(final).data[0]
    assert list(bars.x) == list(final) and list(bars.y) == pytest.approx([float(v.mean()) for v in final.values()])


# -- attention patterns -----------------------------------------------------------------------------


def test_attention_view_shows_hf_attention(gpt2, tmp_path: Path) -> None:
    pytest.importorskip("circuitsvis")
    _, hf = gpt2
    eager = StandardizedTransformer(checkpoint("gpt2"), enable_attention_probs=True)
    view = attention_pattern_view(eager, PROMPT, 1, heads=[3, 0], html_path=tmp_path / "a.html")
    props = json.loads(re.search(r"CircuitsVis\.AttentionHeads,\s*(\{.*\})\s*\)\s*</script>", view.local_src, re.S).group(1))
    tok = eager.tokenizer
    with torch.no_grad():
        expected = hf(**tok(PROMPT, return_tensors="pt"), output_attentions=True).attentions[1][0, [3, 0]]
    assert torch.allclose(torch.tensor(props["attention"]), expected, atol=1e-5)
    assert props["attentionHeadNames"] == ["L1H3", "L1H0"]
    assert props["tokens"] == [visible_text(hf_text(tok, i)) for i in tok(PROMPT)["input_ids"]]
    page = (tmp_path / "a.html").read_text(encoding="utf-8")
    assert "unpkg.com" not in page and "L1H3" in page and len(page) > 100_000  # the viewer's script is inlined
    with pytest.raises(InputError, match="this layer has 4 heads"):
        attention_pattern_view(eager, PROMPT, 1, heads=[4])


# -- missing libraries and bad input, refused before the model runs ---------------------------------


@pytest.fixture
def no_forward(gpt2, monkeypatch: pytest.MonkeyPatch):
    model, _ = gpt2
    monkeypatch.setattr(model, "trace", lambda *a, **k: pytest.fail("the model ran before the input was checked"))
    return model


@pytest.mark.parametrize("blocked", ["matplotlib", "plotly", "circuitsvis"])
def test_missing_library_names_the_extra(no_forward, blocked: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    model = no_forward
    for name in list(sys.modules):
        if name == blocked or name.startswith(blocked + "."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, blocked, None)
    results = {"a": torch.rand(2, 3)}
    calls = {
        "matplotlib": [
            lambda: plot_logit_lens(model, "Hi", path=tmp_path / "x.png"),
            lambda: plot_category_probs(results, tmp_path / "x.png"),
            lambda: lens_figure({"layers": [0], "tokens": ["a"], "top": [[[("a", 1.0)]]]}),
        ],
        "plotly": [
            lambda: plot_logit_lens_plotly(model, "Hi"),
            lambda: plot_patchscope_lens_plotly(model, ["Hi"]),
            lambda: plot_category_probs_plotly(results),
        ],
        "circuitsvis": [lambda: attention_pattern_view(model, "Hi", 0)],
    }[blocked]
    for call in calls:
        with pytest.raises(ImportError, match=rf"needs {blocked}, which is not installed: pip install 'nnspec\[display\]'"):
            call()
    if blocked == "matplotlib":  # the HTML page needs nothing: the lens still runs
        monkeypatch.undo()
        write_lens_html({"layers": [0], "tokens": ["a"], "top": [[[("a", 1.0)]]]}, tmp_path / "ok.html")


def test_bad_input_is_refused_before_any_forward(no_forward, tmp_path: Path) -> None:
    model = no_forward
    cases = [
        (InputError, "k must be an integer", lambda: plot_logit_lens_plotly(model, "Hi", k=0)),
        (InputError, "prompt is empty", lambda: plot_logit_lens(model, "", html_path=tmp_path / "x.html")),
        (InputTypeError, "prompt is a list", lambda: lens_grid(model, ["Hi"])),
        (LayerIndexError, "out of range", lambda: plot_logit_lens_plotly(model, "Hi", layers=[7])),
        (InputError, "does not exist", lambda: plot_logit_lens(model, "Hi", path=tmp_path / "no" / "x.png")),
        (InputTypeError, "show must be True or False", lambda: plot_logit_lens_plotly(model, "Hi", show="yes")),
        (InputError, "k must be an integer", lambda: plot_patchscope_lens_plotly(model, ["Hi"], k=10**6)),
        (InputError, "source_prompts is empty", lambda: plot_patchscope_lens_plotly(model, [])),
        (CapabilityUnavailableError, "enable_attention_probs=True", lambda: attention_pattern_view(model, "Hi", 0)),
        (LayerIndexError, "out of range", lambda: attention_pattern_view(model, "Hi", 9)),
        (ShapeMismatchError, "results\\['b'\\] has shape", lambda: plot_category_probs_plotly({"a": torch.rand(2, 3), "b": torch.rand(2, 4)})),
        (InputError, "layers has 2 entries, the results 3", lambda: plot_category_probs_plotly({"a": torch.rand(2, 3)}, layers=[0, 1])),
        (InputError, "results is empty", lambda: plot_category_probs({}, tmp_path / "x.png")),
        (InputTypeError, "give the dict run_prompts returns", lambda: plot_category_probs_plotly([torch.rand(2)])),
        (InputTypeError, "expected the dict lens_grid returns", lambda: write_lens_html({"layers": [0]}, tmp_path / "x.html")),
    ]
    for error, message, call in cases:
        with pytest.raises(error, match=message):
            call()
