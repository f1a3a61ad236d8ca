"""Invariants of the video transformer: layout, causality, KV cache (prefix and sliding,
batched rows), rotary positions, restricted sampling."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from vw_robot.models.rotary import apply_rotary, rotary_tables
from vw_robot.models.sequence_layout import IGNORE_INDEX, SequenceLayout, pad_left
from vw_robot.models.transformer import TransformerConfig, VideoTransformer, sample_next

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
        ({"positions": "alibi"}, "positions"),
        ({"positions": "rope", "dim": 30, "num_heads": 2}, "dim"),  # odd head width
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


# ---- rotary positions and the sliding cache ----


class Stream:
    """One env's control context, kept the way ``VideoWorldPolicy._observe`` keeps it, plus the
    whole episode's ids (what a sliding cache's banded reference forward reads)."""

    def __init__(self, layout: SequenceLayout, window: int, seed: int) -> None:
        self.layout, self.window = layout, window
        self.gen = torch.Generator().manual_seed(seed)
        self.reset()

    def reset(self) -> None:
        self.tokens: list[torch.Tensor] = []  # (N,) per timestep in the window
        self.codes: list[torch.Tensor] = []  # (H,) per timestep in the window
        self.episode: list[torch.Tensor] = []  # every id since the reset

    def observe(self) -> torch.Tensor:
        """A new random frame; the context (L,) ending ``[x_t][SEP]``."""
        layout = self.layout
        frame = torch.randint(0, layout.frame_vocab, (layout.num_frame_tokens,), generator=self.gen)
        self.tokens.append(frame)
        del self.tokens[: -self.window]
        self.episode += [frame, torch.tensor([layout.sep_id])]
        history = len(self.tokens) - 1
        codes = (
            torch.stack(self.codes[-history:])[None]
            if history
            else torch.zeros(1, 0, layout.horizon, dtype=torch.long)
        )  # (1, t-1, H)
        return layout.build_context(torch.stack(self.tokens)[None], codes)[0]

    def record(self, codes: torch.Tensor) -> None:
        self.codes.append(codes)
        del self.codes[: -self.window]
        self.episode.append(codes + self.layout.code_range[0])


def banded_greedy_codes(
    model: VideoTransformer, episode: torch.Tensor, task: torch.Tensor, window: int
) -> torch.Tensor:
    """Greedy codes after episode (1, L) by full forwards with the timestep-banded mask."""
    lo, hi = model.layout.code_range
    ids = episode
    for _ in range(model.layout.horizon):
        logits = model(ids, task, window=window)[0][:, -1]  # (1, V)
        ids = torch.cat([ids, logits[:, lo:hi].argmax(dim=1, keepdim=True) + lo], dim=1)
    return ids[:, episode.shape[1] :] - lo


def test_default_positions_stay_absolute_and_rope_has_no_table() -> None:
    # Checkpoints whose model_config lacks the key must rebuild the same module.
    assert TransformerConfig().positions == "absolute"
    assert "position_embedding.weight" in make_model().state_dict()
    rope = make_model(positions="rope")
    assert not any("position" in name for name in rope.state_dict())
    # No table, no length limit: a window longer than training's still runs.
    ids = LAYOUT.build(*random_steps(LAYOUT, batch=1, steps=5))
    logits, _ = rope(ids, torch.tensor([0]))
    assert logits.shape == (1, ids.shape[1], LAYOUT.vocab_size)
    with pytest.raises(ValueError, match="slide"):
        make_model().make_cache(1, slide=True)


def test_rotary_scores_depend_only_on_the_offset_even_far_into_an_episode() -> None:
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 1, 1, 1, 1, 16, generator=gen)  # (B, l, 1, h, hd) each
    scores = []
    for shift in (0, 10**6):
        cos_q, sin_q = rotary_tables(torch.tensor([[37 + shift]]), 16, torch.float32)
        cos_k, sin_k = rotary_tables(torch.tensor([[5 + shift]]), 16, torch.float32)
        scores.append((apply_rotary(q, cos_q, sin_q) * apply_rotary(k, cos_k, sin_k)).sum())
    torch.testing.assert_close(scores[0], scores[1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("window", [3, 8])
def test_sliding_cache_equals_the_banded_forward_over_the_episode(window: int) -> None:
    # Depth 2: the kept entries' deeper keys saw the dropped timesteps, so the reference is the
    # whole episode with each timestep seeing the window - 1 before it, not a fresh window.
    model = make_model(positions="rope", max_timesteps=window)
    task = torch.tensor([1])
    stream = Stream(LAYOUT, window, seed=window)
    cache = model.make_cache(1)
    for step in range(3 * window):
        context = stream.observe()[None]  # (1, L)
        episode = torch.cat(stream.episode)[None]  # (1, E) ending [x_t][SEP]
        logits = model.forward_context(context, task, cache)  # (1, V)
        reference = model(episode, task, window=window)[0][:, -1]
        torch.testing.assert_close(logits, reference, atol=1e-5, rtol=1e-5)
        codes = model.generate_codes(context, task, cache=cache)
        assert torch.equal(codes, banded_greedy_codes(model, episode, task, window))
        # The cache ends each step holding whole timesteps and never outgrows make_cache(1).
        assert cache.length == min(step + 1, window) * LAYOUT.step_len
        assert cache.capacity == model.config.block_size
        stream.record(codes[0])


def test_training_sequences_longer_than_the_window_need_rope() -> None:
    model = make_model(positions="rope", max_timesteps=3, train_timesteps=6)
    assert model.config.training_window == 3 and model.config.sequence_timesteps == 6
    assert make_model().config.training_window is None  # absolute: plain causal attention
    with pytest.raises(ValueError, match="^train_timesteps: 6 timesteps need positions='rope'"):
        make_model(max_timesteps=3, train_timesteps=6)
    with pytest.raises(ValueError, match="^train_timesteps: 2 is shorter than max_timesteps=3"):
        make_model(positions="rope", max_timesteps=3, train_timesteps=2)


@pytest.mark.parametrize("window", [3, 8])
def test_sliding_cache_equals_fresh_windows_with_one_layer(window: int) -> None:
    # One layer: keys and values come straight from the embeddings, so sliding is exact.
    model = make_model(positions="rope", max_timesteps=window, num_layers=1)
    task = torch.tensor([2])
    stream = Stream(LAYOUT, window, seed=1)
    cache = model.make_cache(1)
    for _ in range(40):  # a long rollout: positions run far past the window
        context = stream.observe()[None]  # (1, L)
        logits = model.forward_context(context, task, cache)
        torch.testing.assert_close(logits, model(context, task)[0][:, -1], atol=1e-5, rtol=1e-5)
        codes = model.generate_codes(context, task, cache=cache)
        assert torch.equal(codes, model.generate_codes(context, task))
        stream.record(codes[0])


def test_prefix_only_rope_cache_equals_fresh_windows() -> None:
    model = make_model(positions="rope")
    task = torch.tensor([0])
    stream = Stream(LAYOUT, 3, seed=2)
    cache = model.make_cache(1, slide=False)
    for _ in range(10):
        context = stream.observe()[None]
        codes = model.generate_codes(context, task, cache=cache)
        assert torch.equal(codes, model.generate_codes(context, task))
        stream.record(codes[0])


@pytest.mark.parametrize("positions", ["rope", "absolute"])
def test_batched_rows_at_different_points_equal_each_row_alone(positions: str) -> None:
    window = 3
    model = make_model(positions=positions, max_timesteps=window)
    streams = [Stream(LAYOUT, window, seed=10 + b) for b in range(3)]
    alone = [model.make_cache(1) for _ in streams]
    batched = model.make_cache(len(streams))
    task = torch.tensor([0, 1, 2])
    restarts = {2: [1], 3: [2], 7: [0, 1]}  # episodes end at different steps
    seen_lengths = set()
    for step in range(12):
        for b in restarts.get(step, []):
            streams[b].reset()
            batched.reset_rows([b])
            alone[b].reset()
        if step == 9:  # row 2 moves on to another subtask: its cached entries must go
            task = torch.tensor([0, 1, 0])
        contexts = [stream.observe() for stream in streams]
        ids, lengths = pad_left(contexts, pad_id=LAYOUT.sep_id)  # (3, L), (3,)
        seen_lengths.add(tuple(lengths.tolist()))
        logits = model.forward_context(ids, task, batched, lengths)  # (3, V)
        codes = model.generate_codes(ids, task, cache=batched, lengths=lengths)  # (3, H)
        uncached = model.generate_codes(ids, task, lengths=lengths)
        for b, context in enumerate(contexts):
            row_task = task[b : b + 1]
            one = model.forward_context(context[None], row_task, alone[b])  # (1, V)
            torch.testing.assert_close(logits[b : b + 1], one, atol=1e-5, rtol=1e-5)
            own = model.generate_codes(context[None], row_task, cache=alone[b])
            assert torch.equal(codes[b : b + 1], own)
            assert torch.equal(uncached[b : b + 1], model.generate_codes(context[None], row_task))
            streams[b].record(codes[b])
    assert any(len(set(lengths)) == 3 for lengths in seen_lengths)  # 1, 2 and 3 timesteps
    if positions == "rope":  # row 2 refilled its window beside rows that slid: more columns
        assert batched.capacity > model.config.block_size


def test_sliding_cache_for_the_no_code_variant_keeps_only_observed_frames() -> None:
    # The no-LDM policy predicts the next frame from the last window - 1 observed ones.
    window = 3
    model = make_model(ABLATION, positions="rope", max_timesteps=window + 1)
    task = torch.tensor([0])
    cache = model.make_cache(1)
    tokens, _ = random_steps(ABLATION, batch=1, steps=12, seed=3)
    for t in range(tokens.shape[1]):
        context = ABLATION.build(tokens[:, max(0, t + 1 - window) : t + 1], None)  # (1, L)
        episode = ABLATION.build(tokens[:, : t + 1], None)
        logits = model.forward_context(context, task, cache)
        reference = model(episode, task, window=window)[0][:, -1]
        torch.testing.assert_close(logits, reference, atol=1e-5, rtol=1e-5)
        model.generate_frame_tokens(context, task, cache=cache)
        assert cache.length == context.shape[1]  # the predicted tokens are forgotten


def test_pad_left_and_lengths_errors() -> None:
    ids, lengths = pad_left([torch.tensor([1, 2, 3]), torch.tensor([4])], pad_id=0)
    assert torch.equal(ids, torch.tensor([[1, 2, 3], [0, 0, 4]]))
    assert torch.equal(lengths, torch.tensor([3, 1]))
    model = make_model(positions="rope")
    cache = model.make_cache(2)
    cache.reset_rows([])  # nothing to forget
    assert cache.length == 0
    context = LAYOUT.build_context(*random_steps(LAYOUT, batch=2, steps=1)[:1], None)
    task = torch.tensor([0, 0])
    with pytest.raises(ValueError, match="lengths"):
        model.generate_codes(context, task, lengths=torch.tensor([0, 7]))
    with pytest.raises(ValueError, match="context_ids"):  # 5 ids is not [frame tokens][SEP]
        model.generate_codes(context, task, lengths=torch.tensor([5, 7]))
