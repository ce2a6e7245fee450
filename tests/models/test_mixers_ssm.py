"""The sequence mixers: Mamba2D (selective scan) and GLA2D (gated linear attention).

Kernels against references: the chunked linear scan against a step-by-step loop (float64, gradcheck),
the selective scan against mambapy's parallel scan, chunked GLA against flash-linear-attention's
``naive_recurrent_gla`` (float32, forward and gradients, within 1e-5 of the reference's scale); then
each mixer against a slow reference assembled from those packages on explicitly ordered sequences,
the treatment of CLS, registers and padding, odd grids, and a tiny network of each.
"""

import warnings

import pytest
import torch
import torch.nn.functional as F

from tests.models.helpers import tiny
from vitlab.config import instantiate
from vitlab.mixers import GLA2D, Mamba2D, chunk_gla, linear_scan, selective_scan
from vitlab.mixers.chunk_gla import gla_scores
from vitlab.models import TokenLayout

TOL = 1e-5  # fp32 parity, relative to the largest magnitude of the reference tensor


def assert_parity(ours, ref, tol=TOL):
    """Every pair within ``tol * max(1, max|ref|)``."""
    for i, (a, b) in enumerate(zip(ours, ref)):
        assert a.shape == b.shape, i
        scale = max(1.0, b.abs().max().item())
        err = (a - b).abs().max().item()
        assert err <= tol * scale, f"tensor {i}: max error {err:.2e} at scale {scale:.1f}"


def forward_and_grads(fn, inputs, weight):
    out = fn(*inputs)
    return [out, *torch.autograd.grad((out * weight).sum(), inputs)]


def sequential_scan(log_a, b):
    log_a, b = torch.broadcast_tensors(log_a, b)
    h, out = torch.zeros_like(b[:, 0]), []
    for t in range(b.shape[1]):
        h = log_a[:, t].exp() * h + b[:, t]
        out.append(h)
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("L", [1, 2, 9, 30])
@pytest.mark.parametrize("chunk_size", [None, 1, 4, 64])
def test_linear_scan_matches_the_recurrence(L, chunk_size):
    torch.manual_seed(L)
    b = torch.randn(2, L, 3, 4, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, L, 3, 4, dtype=torch.float64)
    for log_a in (-torch.rand(2, L, 3, 4, dtype=torch.float64) * 3, -torch.rand(2, L, 3, 1, dtype=torch.float64)):
        log_a.requires_grad_()  # a decay per element, and one broadcast over the last axis
        ours = forward_and_grads(lambda a, x: linear_scan(a, x, chunk_size=chunk_size), [log_a, b], weight)
        torch.testing.assert_close(ours, forward_and_grads(sequential_scan, [log_a, b], weight))


def test_linear_scan_custom_op_gradcheck_and_errors():
    log_a, b = (-torch.rand(1, 7, 2, dtype=torch.float64)).requires_grad_(), torch.randn(1, 7, 2, dtype=torch.float64)
    for reverse in (False, True):  # the backward runs the scan the other way: both directions are checked
        assert torch.autograd.gradcheck(torch.ops.vitlab.linear_scan, (log_a, b.requires_grad_(), 3, reverse))
        torch.library.opcheck(torch.ops.vitlab.linear_scan, (log_a.float(), b.float(), 3, reverse))
    # a strong decay over many steps: no overflow (every exponent is a sum of log_a <= 0)
    h = linear_scan(torch.full((1, 400, 2), -30.0), torch.randn(1, 400, 2))
    assert torch.isfinite(h).all()
    with pytest.raises(ValueError, match="chunk_size must be >= 1, got 0"):
        linear_scan(log_a, b, chunk_size=0)
    with pytest.raises(ValueError, match="sequence on dim 1"):
        linear_scan(log_a[:, :3], b)


def mambapy_selective_scan(x, delta, A, B, C, D):
    """mambapy's parallel-scan (Blelloch) selective scan: x, delta [B, L, D], A [D, N], B, C [B, L, N], D [D]."""
    from mambapy.mamba import MambaBlock

    return MambaBlock.selective_scan(None, x, delta, A, B, C, D)  # uses nothing of self


@pytest.mark.parametrize("L", [1, 16, 37, 130])
@pytest.mark.parametrize("chunk_size", [None, 5])
def test_selective_scan_matches_mambapy(L, chunk_size):
    pytest.importorskip("mambapy")
    torch.manual_seed(L)
    batch, channels, N = 2, 6, 5
    x = torch.randn(batch, L, channels)
    delta = F.softplus(torch.randn(batch, L, channels))
    A, B, C, D = -torch.rand(channels, N) * 3, torch.randn(batch, L, N), torch.randn(batch, L, N), torch.randn(channels)
    inputs = [t.requires_grad_() for t in (x, delta, A, B, C, D)]
    weight = torch.randn(batch, L, channels)

    def ours(x, delta, A, B, C, D):
        y = selective_scan(x.transpose(1, 2), delta.transpose(1, 2), A, B.transpose(1, 2)[:, None],
                           C.transpose(1, 2)[:, None], D, chunk_size=chunk_size, backend="torch")
        return y.transpose(1, 2)

    assert_parity(forward_and_grads(ours, inputs, weight), forward_and_grads(mambapy_selective_scan, inputs, weight))


def test_selective_scan_groups_are_independent_scans():
    """K groups of channels, each with its own B and C (VMamba's directions), are K scans of their own."""
    pytest.importorskip("mambapy")
    torch.manual_seed(0)
    batch, K, Dk, N, L = 2, 3, 4, 5, 11
    u, delta = torch.randn(batch, K * Dk, L), F.softplus(torch.randn(batch, K * Dk, L))
    A, B, C, D = -torch.rand(K * Dk, N), torch.randn(batch, K, N, L), torch.randn(batch, K, N, L), torch.randn(K * Dk)
    y = selective_scan(u, delta, A, B, C, D)
    for k in range(K):
        ch = slice(k * Dk, (k + 1) * Dk)
        ref = mambapy_selective_scan(u[:, ch].mT, delta[:, ch].mT, A[ch], B[:, k].mT, C[:, k].mT, D[ch])
        torch.testing.assert_close(y[:, ch], ref.mT, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="K dividing D"):
        selective_scan(u[:, :-1], delta[:, :-1], A[:-1], B, C, D[:-1])


@pytest.mark.parametrize("tile_elements", [1, 180, 1 << 20])  # a step per tile, 3 steps, the whole sequence
def test_streamed_scan_matches_the_chunked_scan_across_tiles(monkeypatch, tile_elements):
    """The streamed scan (the CPU default) carries the state forward, and the adjoint back, across tile edges."""
    import vitlab.mixers.streamed_scan as streamed

    monkeypatch.setattr(streamed, "_TILE_ELEMENTS", tile_elements)
    torch.manual_seed(tile_elements)
    batch, K, Dk, N, L = 2, 2, 3, 5, 13  # one step: 2 x 2 x 3 x 5 = 60 elements
    inputs = [torch.randn(batch, K * Dk, L, dtype=torch.float64), F.softplus(torch.randn(batch, K * Dk, L, dtype=torch.float64)),
              -torch.rand(K * Dk, N, dtype=torch.float64) * 3, torch.randn(batch, K, N, L, dtype=torch.float64),
              torch.randn(batch, K, N, L, dtype=torch.float64), torch.randn(K * Dk, dtype=torch.float64)]
    inputs = [t.requires_grad_() for t in inputs]
    weight = torch.randn(batch, K * Dk, L, dtype=torch.float64)
    torch.testing.assert_close(forward_and_grads(lambda *x: selective_scan(*x, chunk_size=L), inputs, weight),
                               forward_and_grads(lambda *x: selective_scan(*x, chunk_size=4), inputs, weight))


def test_streamed_scan_ops_gradcheck_opcheck_and_flops():
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    L, batch, K, Dk, N = 7, 2, 2, 3, 4
    u, dt = torch.randn(L, batch, K, Dk, dtype=torch.float64), F.softplus(torch.randn(L, batch, K, Dk, dtype=torch.float64))
    A, Bm, Cm = -torch.rand(K, Dk, N, dtype=torch.float64), *torch.randn(2, L, batch, K, N, dtype=torch.float64)
    inputs = [t.requires_grad_() for t in (u, dt, A, Bm, Cm)]
    op = torch.ops.vitlab.selective_scan_streamed
    assert torch.autograd.gradcheck(lambda *x: op(*x, 3)[0], inputs)
    torch.library.opcheck(op, (*[t.float() for t in inputs], 3))
    y, entering = op(*inputs, 3)
    assert entering.shape == (3, batch, K, Dk, N)  # the state entering each of the 3 tiles
    torch.library.opcheck(torch.ops.vitlab.selective_scan_streamed_backward,
                          (torch.randn_like(y).float(), *[t.detach().float() for t in inputs], entering.detach().float(), 3))
    with FlopCounterMode(display=False) as counter:
        y, _ = op(*inputs, 3)
        y.sum().backward()
    elements = L * batch * K * Dk * N
    assert counter.get_total_flops() == 4 * elements + 6 * elements  # as selective_scan_flop_count says


def fla_naive_gla(q, k, v, g):
    """flash-linear-attention's step-by-step reference, [B, T, H, d] inputs (the module imports on CPU)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Triton is not supported on current platform"
        from fla.ops.gla.naive import naive_recurrent_gla
    return naive_recurrent_gla(q, k, v, g)[0]


@pytest.mark.parametrize("L", [1, 7, 16, 45])
@pytest.mark.parametrize("chunk_size", [1, 4, 16, 32])
def test_chunk_gla_matches_fla_naive_recurrent_gla(L, chunk_size):
    pytest.importorskip("fla")
    torch.manual_seed(L)
    B, H, dk, dv = 2, 3, 8, 12
    q, k = torch.randn(B, L, H, dk), torch.randn(B, L, H, dk)
    v, g = torch.randn(B, L, H, dv), F.logsigmoid(2 * torch.randn(B, L, H, dk))
    inputs = [t.requires_grad_() for t in (q, k, v, g)]
    weight = torch.randn(B, L, H, dv)
    ours = lambda *t: chunk_gla(*(x.transpose(1, 2) for x in t), chunk_size=chunk_size).transpose(1, 2)  # noqa: E731
    assert_parity(forward_and_grads(ours, inputs, weight), forward_and_grads(fla_naive_gla, inputs, weight))


@pytest.mark.parametrize("c", [3, 8, 12, 21, 32])
def test_gla_scores_by_sub_chunks_match_the_pairwise_form(c):
    """The scores op works in sub-chunks of 8 steps (padded where c is not a multiple); the plain pairwise
    ``sum_i q[t, i] k[s, i] exp(G[t, i] - G[s, i])`` over the whole chunk is the reference, forward and gradients."""
    torch.manual_seed(c)
    q, k = torch.randn(2, 3, c, 5, dtype=torch.float64), torch.randn(2, 3, c, 5, dtype=torch.float64)
    G = F.logsigmoid(2 * torch.randn(2, 3, c, 5, dtype=torch.float64)).cumsum(-2)
    inputs = [t.requires_grad_() for t in (q, k, G)]
    weight = torch.randn(2, 3, c, c, dtype=torch.float64)
    causal = torch.ones(c, c, dtype=torch.bool).tril()

    def pairwise(q, k, G):
        diff = (G.unsqueeze(-2) - G.unsqueeze(-3)).masked_fill(~causal.unsqueeze(-1), float("-inf"))
        return (q.unsqueeze(-2) * k.unsqueeze(-3) * diff.exp()).sum(-1)

    ours, ref = gla_scores(*inputs), pairwise(*inputs)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(torch.autograd.grad((ours * weight).sum(), inputs),
                               torch.autograd.grad((ref * weight).sum(), inputs))


def test_gla_scores_custom_op_and_strong_gates():
    q, k = torch.randn(2, 3, 12, 4, requires_grad=True), torch.randn(2, 3, 12, 4, requires_grad=True)  # 2 sub-chunks
    G = (-torch.rand(2, 3, 12, 4)).cumsum(-2).requires_grad_()
    torch.library.opcheck(torch.ops.vitlab.gla_scores, (q, k, G))
    assert torch.autograd.gradcheck(gla_scores, [t.detach()[:1, :1].double().requires_grad_() for t in (q, k, G)])
    # gates near zero forget everything within a chunk: exponents far below -88, nothing overflows
    q, k, v = torch.randn(3, 1, 2, 64, 4).unbind(0)
    o = chunk_gla(q, k, v, torch.full((1, 2, 64, 4), -50.0), chunk_size=64)
    assert torch.isfinite(o).all()
    torch.testing.assert_close(o, (q * k).sum(-1, keepdim=True) * v / 2)  # only each token's own k v is left


LAYOUTS = [TokenLayout(3, 5, 1, 2), TokenLayout(4, 4, 0, 0), TokenLayout(1, 7, 1, 0), TokenLayout(5, 1, 1, 3)]


def directions(layout: TokenLayout, scan: str) -> list[torch.Tensor]:
    """Token indices of each scanned sequence, written out independently of vitlab.mixers.scan_order."""
    h, w, T = layout.grid_h, layout.grid_w, layout.num_tokens
    extras = torch.arange(h * w, T)
    rows = torch.arange(T)
    cols = torch.cat((torch.arange(h * w).view(h, w).t().flatten(), extras))
    orders = [rows, rows.flip(0)] + ([cols, cols.flip(0)] if scan == "cross" else [])
    return orders


def patch_conv_reference(conv, u, layout):
    out = u.clone()
    h, w = layout.grid_h, layout.grid_w
    grid = u[:, : h * w].reshape(u.shape[0], h, w, -1).permute(0, 3, 1, 2)
    out[:, : h * w] = conv(grid).permute(0, 2, 3, 1).reshape(u.shape[0], h * w, -1)
    return out


def mamba2d_reference(m: Mamba2D, x, layout):
    u, z = m.in_proj(x).chunk(2, dim=-1)
    u = F.silu(patch_conv_reference(m.conv, u, layout))
    R, N = m.dt_rank, m.d_state
    y = torch.zeros_like(u)
    for k, order in enumerate(directions(layout, m.scan)):
        seq = u[:, order]
        dt, B, C = (seq @ m.x_proj_weight[k].T).split((R, N, N), dim=-1)
        delta = F.softplus(dt @ m.dt_proj_weight[k].T + m.dt_proj_bias[k])
        y[:, order] += mambapy_selective_scan(seq, delta, -m.A_log[k].exp(), B, C, m.D[k])
    return m.out_proj(y / len(directions(layout, m.scan)) * F.silu(z))


def gla2d_reference(m: GLA2D, x, layout):
    local = patch_conv_reference(m.conv, x, layout)
    dk, H = m.key_dim, m.num_heads
    q, k, v = m.qkv(local).split((dk, dk, m.dim), dim=-1)
    g_f, g_b = (F.logsigmoid(m.gate_up(m.gate_down(local))) / m.gate_logit_normalizer).chunk(2, dim=-1)
    heads = lambda t: t.unflatten(-1, (H, -1))  # noqa: E731
    o_f = fla_naive_gla(heads(q), heads(k), heads(v), heads(g_f))
    o_b = fla_naive_gla(*(heads(t).flip(1) for t in (q, k, v, g_b))).flip(1)
    s = torch.sigmoid(m.g_proj(local)).unflatten(-1, (H, -1))
    return m.o_proj((m.g_norm((o_f + o_b) / 2) * s + m.l_norm(heads(local)) * (1 - s)).flatten(2))


def make_mixer(kind: str, dim: int = 16) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "gla":
        mixer = GLA2D(dim, num_heads=2, chunk_size=4)
        for p in (mixer.gate_up.bias, mixer.g_proj.bias):
            torch.nn.init.normal_(p)  # nonzero, so a wrong direction or gate shows
        return mixer
    return Mamba2D(dim, scan=kind, d_state=4, chunk_size=3)


@pytest.mark.parametrize("kind", ["bidirectional", "cross", "gla"])
@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda lay: f"{lay.grid_h}x{lay.grid_w}+{lay.num_cls}+{lay.num_registers}")
def test_mixer_matches_reference_on_explicit_scan_orders(kind, layout):
    pytest.importorskip("mambapy" if kind != "gla" else "fla")
    mixer = make_mixer(kind)
    x = torch.randn(2, layout.num_tokens, 16)
    reference = gla2d_reference if kind == "gla" else mamba2d_reference
    torch.testing.assert_close(mixer(x, layout), reference(mixer, x, layout), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ["bidirectional", "cross", "gla"])
def test_cls_reads_every_patch_and_every_patch_reads_the_registers(kind):
    mixer = make_mixer(kind)
    layout = TokenLayout(3, 5, 1, 2)
    x = torch.randn(1, layout.num_tokens, 16, requires_grad=True)
    out = mixer(x, layout)
    cls = layout.num_patches
    (grad_cls,) = torch.autograd.grad(out[:, cls].sum(), x, retain_graph=True)
    assert (grad_cls[0, : layout.num_patches].abs().sum(-1) > 0).all()
    for p in range(layout.num_patches):
        (grad_patch,) = torch.autograd.grad(out[:, p].sum(), x, retain_graph=True)
        assert (grad_patch[0, layout.register_start :].abs().sum(-1) > 0).all(), p


@pytest.mark.parametrize("kind", ["bidirectional", "cross", "gla"])
def test_padding_is_neither_mixed_nor_written(kind):
    mixer = make_mixer(kind)
    layout = TokenLayout(3, 5, 1, 2)  # 18 tokens, padded to 20
    x = torch.randn(2, layout.num_padded_tokens, 16)
    out = mixer(x, layout)
    torch.testing.assert_close(out[:, : layout.num_tokens], mixer(x[:, : layout.num_tokens], layout))
    assert torch.all(out[:, layout.num_tokens :] == 0)
    with pytest.raises(ValueError, match="got 17 tokens for a layout of 18"):
        mixer(x[:, :17], layout)


@pytest.mark.parametrize("pattern", ["S", "V", "L", "SVLA"])
@pytest.mark.parametrize("size", [(16, 16), (12, 20), (20, 4)])
def test_tiny_network_of_each_mixer(pattern, size):
    model = instantiate(tiny(pattern, num_registers=3))
    out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 5)
    out.square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert instantiate(tiny(pattern), device="meta").flop_count(image_size=size) > 0


def test_mamba_init_survives_the_network_init():
    model = instantiate(tiny("S"))
    mixer = model.blocks[0].mixer
    dt = F.softplus(mixer.dt_proj_bias)
    assert (dt >= 1e-4).all() and (dt <= 0.1 + 1e-6).all()  # Mamba's step sizes, not HybridViT's zero biases
    torch.testing.assert_close(mixer.A_log[0, 0].exp(), torch.arange(1.0, 5.0))


def test_constructor_errors_name_the_argument():
    with pytest.raises(ValueError, match="scan must be one of .* got 'zigzag'"):
        Mamba2D(16, scan="zigzag")
    with pytest.raises(ValueError, match="conv_kernel must be odd"):
        Mamba2D(16, conv_kernel=4)
    with pytest.raises(ValueError, match="dt_min=0.2, dt_max=0.1"):
        Mamba2D(16, dt_min=0.2, dt_max=0.1)
    with pytest.raises(ValueError, match="dim=16 is not divisible by num_heads=3"):
        GLA2D(16, num_heads=3)
    with pytest.raises(ValueError, match="0.25 \\* 16 = 4 is not a positive multiple of num_heads=8"):
        GLA2D(16, num_heads=8, expand_k=0.25)
    with pytest.raises(ValueError, match="chunk_size must be >= 1, got 0"):
        GLA2D(16, num_heads=2, chunk_size=0)
