#!/usr/bin/env python3
"""PyTorch eager baseline for bench/gpu-check.sh: the SD1.5 shapes of a Custom Diffusion training
step and of CFG sampling, written with plain torch ops (no diffusers), random weights.

Model (diffusers' UNet2DConditionModel for SD1.5, rebuilt from its config): conv_in 4->320,
sinusoidal time embedding 320 -> 1280 -> 1280, down blocks 320/640/1280/1280 (2 ResNet layers
each, a Transformer2D after each ResNet in the first three, a stride-2 conv between), a mid
block (ResNet, Transformer2D, ResNet), up blocks 1280/1280/640/320 (3 ResNet layers each with
the skip concatenated, Transformer2D in the last three, nearest 2x upsample + conv), GroupNorm
32 + SiLU + conv_out. Transformer2D: GroupNorm(32, eps 1e-6), 1x1 proj_in, LayerNorm -> self
attention (8 heads), LayerNorm -> cross attention over the 77x768 context, LayerNorm -> GEGLU
feed-forward (C -> 8C, gate, 4C -> C), 1x1 proj_out, residual. ResNet: GroupNorm+SiLU, conv3x3,
+ Linear(SiLU(temb)), GroupNorm+SiLU, conv3x3, 1x1 shortcut when the width changes.
Text encoder: CLIP ViT-L/14 text tower (49408 x 768 tokens, 77 positions, 12 pre-LN layers,
12 heads, quick-GELU MLP 3072, causal mask), one modifier token whose embedding row trains.
VAE encoder (latents not cached): AutoencoderKL's encoder 128/256/512/512 with 2 ResNets per
level, mid attention, conv_out -> 8 moments, quant_conv; no gradient.

Training step (what customdiff's trainer does per optimizer step, batch 2 instance + 2 class):
[VAE encode + sample] -> noise, random timesteps -> text encoder (modifier row trainable) ->
UNet forward -> masked instance MSE + prior MSE -> backward (gradients only for the 16 attn2
to_k/to_v weights, fp32 masters, and the modifier row) -> clip_grad_norm_(1.0) -> AdamW.
Precision bf16: frozen weights stored in bf16, the trainable ones in fp32, everything run under
torch.autocast(bfloat16) (GroupNorm/LayerNorm/softmax statistics in fp32 as autocast does);
attention through F.scaled_dot_product_attention (flash attention on Hopper).
Sampling: one CFG step = the UNet on the batch [uncond, cond] (2 x 4 x 64 x 64), guidance and a
DDIM-style update; it/s over N steps, eager (no torch.compile, no CUDA graph).

Prints machine-readable lines (bench/gpu-check.sh greps them):
  torch_unet_fwd_ms X           UNet forward, batch 2 (no grad)
  torch_unet_fwd_tflop X        FLOPs of that forward (torch.utils.flop_counter), when available
  torch_train_step_ms X         training step, latents cached
  torch_train_step_uncached_ms  training step with the VAE encoder at 512
  torch_train_step_ckpt_ms      latents cached, gradient checkpointing per block (--ckpt)
  torch_sample_it_s Y           CFG sampling steps per second
  torch_peak_mem_gib X          torch.cuda.max_memory_allocated over the cached training step
Each time is the median over --iters timed runs after --warmup runs, synchronised per run.

Usage: python3 bench/gpu/torch_sd15.py [--device cuda|cpu] [--tiny] [--iters 10] [--steps 20]
       [--precision bf16|fp32] [--no-uncached] [--ckpt] [--compile] [--latent N]
--tiny: tiny-sd-like widths (32/64/64/64, ctx 32, latent 16x16) for a CPU smoke run.
"""
import argparse
import math
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint


def sdpa(q, k, v, heads, causal=False):
    """q [B,N,C], k/v [B,M,C] -> [B,N,C], `heads` heads of C/heads."""
    B, N, C = q.shape
    M, d = k.shape[1], C // heads
    q = q.view(B, N, heads, d).transpose(1, 2)
    k = k.view(B, M, heads, d).transpose(1, 2)
    v = v.view(B, M, heads, d).transpose(1, 2)
    if hasattr(F, "scaled_dot_product_attention"):
        o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    else:  # torch < 2.0: explicit softmax attention
        s = (q @ k.transpose(-1, -2)) * d ** -0.5
        if causal:
            s = s.masked_fill(torch.ones(N, M, dtype=torch.bool, device=s.device).triu(1), float("-inf"))
        o = s.softmax(-1).to(v.dtype) @ v
    return o.transpose(1, 2).reshape(B, N, C)


class Attention(nn.Module):
    def __init__(self, c, ctx_dim, heads):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(c, c, bias=False)
        self.to_k = nn.Linear(ctx_dim, c, bias=False)
        self.to_v = nn.Linear(ctx_dim, c, bias=False)
        self.to_out = nn.Linear(c, c)

    def forward(self, x, ctx=None):
        ctx = x if ctx is None else ctx
        return self.to_out(sdpa(self.to_q(x), self.to_k(ctx), self.to_v(ctx), self.heads))


class GEGLU(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.proj = nn.Linear(c, 8 * c)
        self.out = nn.Linear(4 * c, c)

    def forward(self, x):
        a, g = self.proj(x).chunk(2, dim=-1)
        return self.out(a * F.gelu(g))


class Transformer2D(nn.Module):
    def __init__(self, c, ctx_dim, heads):
        super().__init__()
        self.norm = nn.GroupNorm(32, c, eps=1e-6)
        self.proj_in = nn.Conv2d(c, c, 1)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(c), nn.LayerNorm(c), nn.LayerNorm(c)
        self.attn1 = Attention(c, c, heads)
        self.attn2 = Attention(c, ctx_dim, heads)
        self.ff = GEGLU(c)
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x, ctx):
        B, C, H, W = x.shape
        h = self.proj_in(self.norm(x)).flatten(2).transpose(1, 2)   # [B, HW, C]
        h = h + self.attn1(self.norm1(h))
        h = h + self.attn2(self.norm2(h), ctx)
        h = h + self.ff(self.norm3(h))
        return x + self.proj_out(h.transpose(1, 2).reshape(B, C, H, W))


class ResNet(nn.Module):
    def __init__(self, cin, cout, temb=None, eps=1e-5):
        super().__init__()
        self.norm1 = nn.GroupNorm(32, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout) if temb else None
        self.norm2 = nn.GroupNorm(32, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb=None):
        h = self.conv1(F.silu(self.norm1(x)))
        if self.time_emb_proj is not None:
            h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.shortcut is None else self.shortcut(x)) + h


def run_block(ckpt, fn, *args):
    if ckpt and torch.is_grad_enabled():
        return torch.utils.checkpoint.checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


class UNet(nn.Module):
    def __init__(self, widths=(320, 640, 1280, 1280), ctx_dim=768, heads=8, layers=2):
        super().__init__()
        c0, temb = widths[0], widths[0] * 4
        self.c0, self.ckpt = c0, False
        self.lin1, self.lin2 = nn.Linear(c0, temb), nn.Linear(temb, temb)
        self.conv_in = nn.Conv2d(4, c0, 3, padding=1)
        self.down, skips, cur = nn.ModuleList(), [c0], c0
        for i, c in enumerate(widths):
            blk = nn.ModuleDict({"res": nn.ModuleList(), "attn": nn.ModuleList()})
            for _ in range(layers):
                blk["res"].append(ResNet(cur, c, temb))
                cur = c
                if i < len(widths) - 1:
                    blk["attn"].append(Transformer2D(c, ctx_dim, heads))
                skips.append(c)
            if i < len(widths) - 1:
                blk["down"] = nn.Conv2d(c, c, 3, stride=2, padding=1)
                skips.append(c)
            self.down.append(blk)
        self.mid_res1, self.mid_attn = ResNet(cur, cur, temb), Transformer2D(cur, ctx_dim, heads)
        self.mid_res2 = ResNet(cur, cur, temb)
        self.up = nn.ModuleList()
        for i, c in enumerate(reversed(widths)):
            blk = nn.ModuleDict({"res": nn.ModuleList(), "attn": nn.ModuleList()})
            for _ in range(layers + 1):
                blk["res"].append(ResNet(cur + skips.pop(), c, temb))
                cur = c
                if i > 0:
                    blk["attn"].append(Transformer2D(c, ctx_dim, heads))
            if i < len(widths) - 1:
                blk["up"] = nn.Conv2d(c, c, 3, padding=1)
            self.up.append(blk)
        self.norm_out = nn.GroupNorm(32, c0)
        self.conv_out = nn.Conv2d(c0, 4, 3, padding=1)

    def time_embedding(self, t):
        half = self.c0 // 2   # flip_sin_to_cos=True, freq_shift=0 (SD1.5)
        f = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        a = t.float()[:, None] * f[None]
        e = torch.cat([torch.cos(a), torch.sin(a)], dim=-1)
        return self.lin2(F.silu(self.lin1(e)))

    def forward(self, x, t, ctx):
        temb = self.time_embedding(t)
        h = self.conv_in(x)
        hs = [h]
        for blk in self.down:
            for j, res in enumerate(blk["res"]):
                h = run_block(self.ckpt, res, h, temb)
                if len(blk["attn"]):
                    h = run_block(self.ckpt, blk["attn"][j], h, ctx)
                hs.append(h)
            if "down" in blk:
                h = blk["down"](h)
                hs.append(h)
        h = run_block(self.ckpt, self.mid_res1, h, temb)
        h = run_block(self.ckpt, self.mid_attn, h, ctx)
        h = run_block(self.ckpt, self.mid_res2, h, temb)
        for blk in self.up:
            for j, res in enumerate(blk["res"]):
                h = run_block(self.ckpt, res, torch.cat([h, hs.pop()], dim=1), temb)
                if len(blk["attn"]):
                    h = run_block(self.ckpt, blk["attn"][j], h, ctx)
            if "up" in blk:
                h = blk["up"](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


class CLIPLayer(nn.Module):
    def __init__(self, c, heads):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(c), nn.LayerNorm(c)
        self.q, self.k, self.v, self.o = (nn.Linear(c, c) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)

    def forward(self, x):
        h = self.ln1(x)
        x = x + self.o(sdpa(self.q(h), self.k(h), self.v(h), self.heads, causal=True))
        h = self.fc1(self.ln2(x))
        return x + self.fc2(h * torch.sigmoid(1.702 * h))   # quick_gelu


class TextEncoder(nn.Module):
    """CLIP text tower; token ids equal to `mod_id` read the trainable fp32 row `mod_row`."""
    def __init__(self, vocab=49408, width=768, layers=12, heads=12, ctx=77):
        super().__init__()
        self.tok = nn.Embedding(vocab, width)
        self.pos = nn.Parameter(torch.randn(ctx, width) * 0.01)
        self.layers = nn.ModuleList(CLIPLayer(width, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)
        self.mod_id = vocab - 1
        self.mod_row = nn.Parameter(torch.randn(width) * 0.02)

    def forward(self, ids):
        e = self.tok(ids)
        m = (ids == self.mod_id)[..., None]
        x = torch.where(m, self.mod_row.to(e.dtype).expand_as(e), e) + self.pos.to(e.dtype)
        for layer in self.layers:
            x = layer(x)
        return self.ln_f(x)


class VAEAttn(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = nn.GroupNorm(32, c, eps=1e-6)
        self.q, self.k, self.v, self.o = (nn.Linear(c, c) for _ in range(4))

    def forward(self, x):
        B, C, H, W = x.shape
        h = self.norm(x).flatten(2).transpose(1, 2)
        h = self.o(sdpa(self.q(h), self.k(h), self.v(h), 1))
        return x + h.transpose(1, 2).reshape(B, C, H, W)


class VAEEncoder(nn.Module):
    def __init__(self, widths=(128, 256, 512, 512), latent=4):
        super().__init__()
        self.conv_in = nn.Conv2d(3, widths[0], 3, padding=1)
        self.blocks, cur = nn.ModuleList(), widths[0]
        for i, c in enumerate(widths):
            blk = nn.ModuleList([ResNet(cur, c, eps=1e-6), ResNet(c, c, eps=1e-6)])
            cur = c
            if i < len(widths) - 1:
                blk.append(nn.Conv2d(c, c, 3, stride=2))   # padded (0,1,0,1) in forward
            self.blocks.append(blk)
        self.mid = nn.ModuleList([ResNet(cur, cur, eps=1e-6), VAEAttn(cur), ResNet(cur, cur, eps=1e-6)])
        self.norm_out = nn.GroupNorm(32, cur, eps=1e-6)
        self.conv_out = nn.Conv2d(cur, 2 * latent, 3, padding=1)
        self.quant_conv = nn.Conv2d(2 * latent, 2 * latent, 1)

    def forward(self, x):
        h = self.conv_in(x)
        for blk in self.blocks:
            h = blk[1](blk[0](h))
            if len(blk) > 2:
                h = blk[2](F.pad(h, (0, 1, 0, 1)))
        h = self.mid[2](self.mid[1](self.mid[0](h)))
        return self.quant_conv(self.conv_out(F.silu(self.norm_out(h))))


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, dev, warmup, iters):
    """Median ms of fn() over iters runs after warmup runs, synchronised per run."""
    for _ in range(warmup):
        fn()
    sync(dev)
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync(dev)
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def build(args, dev):
    tiny = args.tiny
    unet = UNet((32, 64, 64, 64), ctx_dim=32, heads=8) if tiny else UNet()
    text = TextEncoder(vocab=1000, width=32, layers=2, heads=4) if tiny else TextEncoder()
    vae = VAEEncoder((32, 64, 64, 64)) if tiny else VAEEncoder()
    for m in (unet, text, vae):
        m.requires_grad_(False)
        m.to(dev)
        if args.precision == "bf16":
            m.to(torch.bfloat16)   # frozen weights in bf16
    params = []
    for name, mod in unet.named_modules():   # attn2.to_k / to_v: fp32 masters, trainable
        if name.endswith("attn2"):
            for lin in (mod.to_k, mod.to_v):
                lin.weight.data = lin.weight.data.float()
                lin.weight.requires_grad_(True)
                params.append(lin.weight)
    text.mod_row.data = text.mod_row.data.float()
    text.mod_row.requires_grad_(True)
    params.append(text.mod_row)
    return unet, text, vae, params


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--no-uncached", action="store_true", help="skip the VAE-encoder step")
    ap.add_argument("--ckpt", action="store_true", help="also time gradient checkpointing")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (slow to build)")
    ap.add_argument("--latent", type=int, default=0, help="latent side (default 64: 512 px; 16 with --tiny)")
    args = ap.parse_args()
    dev = torch.device(args.device)
    torch.manual_seed(0)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        print("torch %s on %s" % (torch.__version__, torch.cuda.get_device_name(0)), flush=True)
    else:
        print("torch %s on cpu (%d threads)" % (torch.__version__, torch.get_num_threads()), flush=True)
    t0 = time.perf_counter()
    with torch.no_grad():
        unet, text, vae, params = build(args, dev)
    ntrain = sum(p.numel() for p in params)
    print("random models built in %.1f s; trainable %d (attn2 to_k/to_v x %d + modifier row)"
          % (time.perf_counter() - t0, ntrain, (len(params) - 1) // 2), flush=True)

    B, n_inst, HL = 4, 2, args.latent or (16 if args.tiny else 64)
    ctx_w, px = (32, HL * 8) if args.tiny else (768, HL * 8)
    bf16 = args.precision == "bf16"
    ac = lambda: torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16)
    ids = torch.randint(0, text.mod_id, (B, 77), device=dev)
    ids[:n_inst, 5] = text.mod_id   # "photo of a <new1> cat" in the instance prompts
    pixels = torch.randn(B, 3, px, px, device=dev)
    cached = torch.randn(B, 4, HL, HL, device=dev) * 0.18215
    mask = torch.ones(n_inst, 1, HL, HL, device=dev)
    acp = torch.cumprod(1 - torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, device=dev) ** 2, 0)
    opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=1e-2)

    def step(uncached):
        with ac():
            if uncached:
                with torch.no_grad():
                    mom = vae(pixels).float()
                mean, logvar = mom.chunk(2, dim=1)
                z = (mean + torch.exp(0.5 * logvar.clamp(-30, 20)) * torch.randn_like(mean)) * 0.18215
            else:
                z = cached
            noise = torch.randn_like(z)
            t = torch.randint(0, 1000, (B,), device=dev)
            a = acp[t][:, None, None, None]
            zt = a.sqrt() * z + (1 - a).sqrt() * noise
            ctx = text(ids)
            pred = unet(zt, t, ctx).float()
        d = (pred - noise) ** 2
        loss = (d[:n_inst] * mask).sum() / mask.sum() / 4 + d[n_inst:].mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    xs = torch.randn(2, 4, HL, HL, device=dev)
    ts = torch.full((2,), 999, device=dev)
    cs = torch.randn(2, 77, ctx_w, device=dev)

    def fwd():
        with torch.no_grad(), ac():
            return unet(xs, ts, cs)

    ms = timed(fwd, dev, args.warmup, args.iters)
    print("torch_unet_fwd_ms %.3f" % ms, flush=True)
    try:
        from torch.utils.flop_counter import FlopCounterMode
        with FlopCounterMode(display=False) as fc:
            fwd()
        fl = fc.get_total_flops()
        print("torch_unet_fwd_tflop %.4f" % (fl / 1e12))
        print("torch_unet_fwd_tflops %.1f" % (fl / ms / 1e9), flush=True)
    except Exception as e:   # torch < 2.1
        print("(no FLOP counter: %s)" % e)

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    ms = timed(lambda: step(False), dev, args.warmup, args.iters)
    print("torch_train_step_ms %.3f" % ms, flush=True)
    if dev.type == "cuda":
        print("torch_peak_mem_gib %.2f" % (torch.cuda.max_memory_allocated() / 2 ** 30), flush=True)
    if not args.no_uncached:
        ms = timed(lambda: step(True), dev, args.warmup, args.iters)
        print("torch_train_step_uncached_ms %.3f" % ms, flush=True)
    if args.ckpt:
        unet.ckpt = True
        ms = timed(lambda: step(False), dev, args.warmup, args.iters)
        unet.ckpt = False
        print("torch_train_step_ckpt_ms %.3f" % ms, flush=True)

    lat = torch.randn(1, 4, HL, HL, device=dev)
    cfg = torch.randn(2, 77, ctx_w, device=dev)

    def sample(n):
        x = lat.clone()
        for i in range(n):
            t = torch.full((2,), 999 - i * (1000 // max(n, 1)), device=dev)
            with torch.no_grad(), ac():
                e = unet(torch.cat([x, x]), t, cfg).float()
            eps = e[:1] + 7.5 * (e[1:] - e[:1])
            x = 0.98 * x - 0.01 * eps
        return x

    sample(2)
    sync(dev)
    t0 = time.perf_counter()
    sample(args.steps)
    sync(dev)
    print("torch_sample_it_s %.2f" % (args.steps / (time.perf_counter() - t0)), flush=True)

    if args.compile and hasattr(torch, "compile"):
        cu = torch.compile(unet)
        def cfwd():
            with torch.no_grad(), ac():
                return cu(xs, ts, cs)
        t0 = time.perf_counter()
        cfwd()
        sync(dev)
        print("torch.compile build %.1f s" % (time.perf_counter() - t0))
        print("torch_compiled_unet_fwd_ms %.3f" % timed(cfwd, dev, args.warmup, args.iters), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
