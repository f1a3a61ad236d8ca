"""Invariants of the video transformer: layout, causality, KV cache, restricted sampling."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from vw_robot.models.transformer import (
    IGNORE_INDEX,
    SequenceLayout,
    TransformerConfig,
    VideoTransformer,
    sample_next,
)

# Small enough to run in milliseconds, large enough that every part of the layout is exercised.
LAYOUT = SequenceLayout(num_frame_tokens=6, frame_vocab=11, horizon=3, code_vocab=7)
ABLATION = SequenceLayout(num_frame_tokens=6, frame_vocab=11, horizon=0, code_vocab=7)


def make_model(layout: SequenceLayout = LAYOUT, seed: int = 0, **overrides) -> VideoTransformer:
    torch.manual_seed(seed)
    options = dict(num_layers=2, num_heads=2, dim=32, max_timesteps=3, num_tasks=3)
    options.update(overrides)
    return VideoTransformer(TransformerConfig(layout=layout, **options)).eval()


def random_steps(
    layout: SequenceLayout, batch: int, steps: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor | None]:
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(
        0, layout.frame_vocab, (batch, steps, layout.num_frame_tokens), generator=gen
    )
    if layout.horizon == 0:
        return tokens, None
    codes = torch.randint(0, layout.code_vocab, (batch, steps, layout.horizon), generator=gen)
    return tokens, codes


# ---- layout ----


def test_layout_ranges_partition_the_vocabulary() -> None:
    assert LAYOUT.frame_range == (0, 11)
    assert LAYOUT.code_range == (11, 18)
    assert LAYOUT.sep_id == 18
    assert LAYOUT.vocab_size == 19
    assert LAYOUT.step_len == 6 + 1 + 3
    # The ablation keeps SEP and gives codes no ids.
    assert ABLATION.code_range == (11, 11)
    assert ABLATION.vocab_size == 12
    assert ABLATION.step_len == 7


@pytest.mark.parametrize("layout", [LAYOUT, ABLATION], ids=["codes", "no_codes"])
def test_layout_build_split_round_trip(layout: SequenceLayout) -> None:
    tokens, codes = random_steps(layout, batch=2, steps=3)
    ids = layout.build(tokens, codes)
    assert ids.shape == (2, 3 * layout.step_len)
    assert ids.dtype == torch.long
    steps = ids.view(2, 3, layout.step_len)  # (B, T, step_len)
    n = layout.num_frame_tokens
    assert bool((steps[:, :, n] == layout.sep_id).all())
    lo, hi = layout.code_range
    assert bool(((steps[:, :, n + 1 :] >= lo) & (steps[:, :, n + 1 :] < hi)).all())
    tokens_back, codes_back = layout.split(ids)
    assert torch.equal(tokens_back, tokens)
    if codes is None:
        assert codes_back is None
    else:
        assert torch.equal(codes_back, codes)


def test_build_context_is_a_prefix_of_build() -> None:
    tokens, codes = random_steps(LAYOUT, batch=2, steps=3)
    context = LAYOUT.build_context(tokens, codes[:, :2])
    full = LAYOUT.build(tokens, codes)
    assert torch.equal(context, full[:, : full.shape[1] - LAYOUT.horizon])
    assert bool((context[:, -1] == LAYOUT.sep_id).all())
    first = LAYOUT.build_context(tokens[:, :1], None)  # first control step: no codes yet
    assert first.shape == (2, LAYOUT.num_frame_tokens + 1)


def test_layout_errors_name_the_field() -> None:
    tokens, codes = random_steps(LAYOUT, batch=1, steps=2)
    with pytest.raises(ValueError, match="tokens"):
        LAYOUT.build(tokens + LAYOUT.frame_vocab, codes)
    with pytest.raises(ValueError, match="codes"):
        LAYOUT.build(tokens, codes + LAYOUT.code_vocab)
    with pytest.raises(ValueError, match="codes"):
        LAYOUT.build(tokens, None)
    with pytest.raises(ValueError, match="horizon"):
        SequenceLayout(horizon=-1)
    with pytest.raises(ValueError, match="ids"):
        LAYOUT.split(torch.zeros(1, LAYOUT.step_len + 1, dtype=torch.long))


def test_targets_count_frames_and_codes_but_not_sep() -> None:
    tokens, codes = random_steps(LAYOUT, batch=2, steps=2)
    ids = LAYOUT.build(tokens, codes)
    targets = LAYOUT.targets(ids)
    mask = LAYOUT.target_mask(2)
    assert torch.equal(targets[0] != IGNORE_INDEX, mask)
    counted = targets[targets != IGNORE_INDEX]
    assert not bool((counted == LAYOUT.sep_id).any())
    # Every id after the first is a target except the two SEPs: 2 * 10 - 1 - 2.
    assert int(mask.sum()) == 17
    assert torch.equal(targets[:, :-1][:, mask[:-1]], ids[:, 1:][:, mask[:-1]])
    codes_only = LAYOUT.target_mask(2, frames=False)
    assert int(codes_only.sum()) == 2 * LAYOUT.horizon
    # A padded second timestep contributes no targets.
    valid = torch.tensor([[True, False], [True, True]])
    padded = LAYOUT.targets(ids, valid=valid)
    # Row 0 keeps frame 0's tokens after its first one, and step 0's codes.
    assert int((padded[0] != IGNORE_INDEX).sum()) == (6 - 1) + 3
    assert torch.equal(padded[1], targets[1])


# ---- config ----


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"dim": 30, "num_heads": 4}, "dim"),
        ({"num_layers": 0}, "num_layers"),
        ({"num_heads": 0}, "num_heads"),
        ({"dropout": 1.0}, "dropout"),
        ({"max_timesteps": 0}, "max_timesteps"),
        ({"num_tasks": 0}, "num_tasks"),
        ({"layout": "big"}, "layout"),
    ],
)
def test_config_errors_name_the_key(overrides: dict, key: str) -> None:
    with pytest.raises(ValueError, match=f"^{key}"):
        TransformerConfig(**overrides)


def test_layout_errors_inside_config_carry_the_prefix() -> None:
    config = TransformerConfig()
    config.layout.code_vocab = 0
    with pytest.raises(ValueError, match="layout.code_vocab"):
        config.validate()


# ---- model ----


def test_forward_shapes_and_causality() -> None:
    model = make_model()
    tokens, codes = random_steps(LAYOUT, batch=2, steps=3)
    ids = LAYOUT.build(tokens, codes)
    task = torch.tensor([0, 2])
    logits, loss = model(ids, task)
    assert logits.shape == (2, ids.shape[1], LAYOUT.vocab_size)
    assert loss is None
    k = 13
    changed = ids.clone()
    changed[:, k] = (changed[:, k] + 1) % LAYOUT.frame_vocab
    logits_changed, _ = model(changed, task)
    assert torch.equal(logits_changed[:, :k], logits[:, :k])
    assert not torch.allclose(logits_changed[:, k], logits[:, k])


def test_task_embedding_changes_the_output() -> None:
    model = make_model()
    ids = LAYOUT.build(*random_steps(LAYOUT, batch=1, steps=2))
    logits_a, _ = model(ids, torch.tensor([0]))
    logits_b, _ = model(ids, torch.tensor([1]))
    assert not torch.allclose(logits_a, logits_b, atol=1e-4)


def test_window_longer_than_block_size_is_refused() -> None:
    model = make_model()
    ids = LAYOUT.build(*random_steps(LAYOUT, batch=1, steps=4))
    with pytest.raises(ValueError, match="block_size"):
        model(ids, torch.tensor([0]))


@pytest.mark.parametrize("layout", [LAYOUT, ABLATION], ids=["codes", "no_codes"])
def test_kv_cache_matches_full_forward(layout: SequenceLayout) -> None:
    model = make_model(layout)
    ids = layout.build(*random_steps(layout, batch=2, steps=3))
    cache = model.make_cache(batch_size=2)
    for task in (torch.tensor([0, 1]), torch.tensor([2, 2])):
        full, _ = model(ids, task)
        cache.reset()
        prefix = 9
        pieces = [model.forward_incremental(ids[:, :prefix], task, cache)]
        pieces.append(model.forward_incremental(ids[:, prefix : prefix + 3], task, cache))
        for i in range(prefix + 3, ids.shape[1]):
            pieces.append(model.forward_incremental(ids[:, i : i + 1], task, cache))
        incremental = torch.cat(pieces, dim=1)
        assert cache.length == ids.shape[1]
        torch.testing.assert_close(incremental, full, atol=1e-5, rtol=1e-5)


def test_kv_cache_refuses_to_grow_and_checks_the_task() -> None:
    model = make_model()
    ids = LAYOUT.build(*random_steps(LAYOUT, batch=1, steps=3))
    task = torch.tensor([0])
    cache = model.make_cache(batch_size=1, capacity=ids.shape[1] - 1)
    model.forward_incremental(ids[:, :-1], task, cache)
    with pytest.raises(ValueError, match="full"):
        model.forward_incremental(ids[:, -1:], task, cache)
    cache.truncate(5)
    with pytest.raises(ValueError, match="task"):
        model.forward_incremental(ids[:, 5:6], torch.tensor([1]), cache)
    with pytest.raises(ValueError, match="capacity"):
        model.make_cache(batch_size=1, capacity=model.config.block_size + 1)


def test_sample_next_stays_in_range() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 20, generator=gen)
    logits[:, 0] = 100.0  # the best id overall lies outside the range
    for temperature, top_k in [(0.0, None), (1.0, None), (5.0, None), (1.0, 2)]:
        ids = sample_next(logits, (5, 9), temperature=temperature, top_k=top_k, generator=gen)
        assert ids.shape == (64,)
        assert bool(((ids >= 5) & (ids < 9)).all())
    greedy = sample_next(logits, (5, 9))
    assert torch.equal(greedy, logits[:, 5:9].argmax(dim=1) + 5)
    with pytest.raises(ValueError, match="vocab_range"):
        sample_next(logits, (9, 9))


def test_generate_codes_greedy_matches_uncached_decoding_and_reuses_the_cache() -> None:
    model = make_model()
    tokens, codes = random_steps(LAYOUT, batch=2, steps=3)
    task = torch.tensor([1, 0])
    context = LAYOUT.build_context(tokens[:, :2], codes[:, :1])
    cache = model.make_cache(batch_size=2)
    generated = model.generate_codes(context, task, cache=cache)
    assert generated.shape == (2, LAYOUT.horizon)
    assert bool(((generated >= 0) & (generated < LAYOUT.code_vocab)).all())
    # Greedy decoding by hand with full forwards.
    ids = context
    for _ in range(LAYOUT.horizon):
        logits, _ = model(ids, task)
        lo, hi = LAYOUT.code_range
        ids = torch.cat([ids, logits[:, -1, lo:hi].argmax(dim=1, keepdim=True) + lo], dim=1)
    assert torch.equal(generated, ids[:, context.shape[1] :] - lo)
    assert cache.length == context.shape[1] + LAYOUT.horizon - 1
    # Next control step: the context grows by the sampled codes and a new frame; the cache keeps
    # its prefix and the result equals decoding from scratch.
    longer = LAYOUT.build_context(tokens, torch.cat([codes[:, :1], generated[:, None]], dim=1))
    again = model.generate_codes(longer, task, cache=cache)
    assert torch.equal(again, model.generate_codes(longer, task))
    # A slid window (prefix no longer shared) and a new task are handled by re-prefilling.
    slid = LAYOUT.build_context(tokens[:, 1:], generated[:, None])
    assert torch.equal(
        model.generate_codes(slid, task, cache=cache), model.generate_codes(slid, task)
    )
    other = torch.tensor([2, 2])
    assert torch.equal(
        model.generate_codes(slid, other, cache=cache), model.generate_codes(slid, other)
    )


def test_generate_with_temperature_stays_in_range() -> None:
    model = make_model()
    tokens, codes = random_steps(LAYOUT, batch=8, steps=2)
    context = LAYOUT.build_context(tokens, codes[:, :1])
    gen = torch.Generator().manual_seed(1)
    codes_out = model.generate_codes(
        context, torch.zeros(8, dtype=torch.long), temperature=2.0, generator=gen
    )
    assert bool(((codes_out >= 0) & (codes_out < LAYOUT.code_vocab)).all())
    frames = model.generate_frame_tokens(
        LAYOUT.build(tokens[:, :1], codes[:, :1]),
        torch.zeros(8, dtype=torch.long),
        temperature=2.0,
        generator=gen,
    )
    assert frames.shape == (8, LAYOUT.num_frame_tokens)
    assert bool(((frames >= 0) & (frames < LAYOUT.frame_vocab)).all())
    with pytest.raises(ValueError, match="context_ids"):
        model.generate_codes(LAYOUT.build(tokens, codes), torch.zeros(8, dtype=torch.long))


def test_no_code_variant_generates_frames() -> None:
    model = make_model(ABLATION)
    tokens, _ = random_steps(ABLATION, batch=2, steps=3)
    ids = ABLATION.build(tokens, None)
    task = torch.tensor([0, 1])
    _, loss = model(ids, task, ABLATION.targets(ids))
    assert torch.isfinite(loss)
    context = ids[:, : 2 * ABLATION.step_len]  # ends with [tokens of x_1][SEP]
    cache = model.make_cache(batch_size=2)
    frames = model.generate_frame_tokens(context, task, cache=cache)
    assert frames.shape == (2, ABLATION.num_frame_tokens)
    assert bool(((frames >= 0) & (frames < ABLATION.frame_vocab)).all())
    assert torch.equal(frames, model.generate_frame_tokens(context, task))
    with pytest.raises(ValueError, match="horizon"):
        model.generate_codes(context, task)


def test_overfits_a_tiny_sequence_set() -> None:
    model = make_model(seed=0).train()
    tokens, codes = random_steps(LAYOUT, batch=4, steps=3, seed=1)
    tokens[:, 0, 0] = torch.arange(4)  # distinct first ids make every sequence predictable
    ids = LAYOUT.build(tokens, codes)
    targets = LAYOUT.targets(ids)
    task = torch.tensor([0, 1, 2, 0])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        _, loss = model(ids, task, targets)
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    _, final = model(ids, task, targets)
    assert final.item() < first / 10


def test_safetensors_round_trip_gives_identical_logits(tmp_path) -> None:
    model = make_model(seed=0)
    path = tmp_path / "transformer.safetensors"
    save_file(model.state_dict(), str(path))
    restored = make_model(seed=1)
    restored.load_state_dict(load_file(str(path)))
    ids = LAYOUT.build(*random_steps(LAYOUT, batch=2, steps=2))
    task = torch.tensor([0, 1])
    assert torch.equal(model(ids, task)[0], restored(ids, task)[0])
