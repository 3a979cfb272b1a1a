"""Tokens/s and MFU of LoRA training on a 1B Llama-shaped model at sequence length 2048 (a CUDA GPU only).

The model is built from a config with random weights (Llama-3.2-1B's shape; no download), its
base in bf16, LoRA r=16 on every linear layer, AdamW on the adapters, bf16 autocast, random
tokens. Goal: ≥ 35 % MFU on an H100-class GPU. Never needed by the tests.

MFU = achieved model FLOP/s ÷ the GPU's peak dense bf16 FLOP/s. Model FLOPs per token, for
LoRA: 4·N (the forward 2·N, and the backward's activation gradients 2·N; the frozen weights get
no weight gradients) plus attention 12·L·s·d (PaLM's convention, not halved for causality), with
N the matmul parameters (lm_head included, embeddings excluded). Gradient checkpointing's
recomputation is not counted (it is overhead, not model work).

    python bench/gpu_mfu.py [--batch 4] [--seq 2048] [--steps 20] [--attn auto] [--checkpointing]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "H800": 989.0, "GH200": 989.0, "B200": 2250.0,
                    "A100": 312.0, "A800": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0, "RTX 4090": 165.0}


def peak_tflops(name: str) -> float | None:
    for key, value in sorted(PEAK_BF16_TFLOPS.items(), key=lambda kv: -len(kv[0])):
        if key in name:
            return value
    return None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--attn", default="auto", choices=["auto", "sdpa", "flash_attention_2", "eager"])
    ap.add_argument("--checkpointing", action="store_true", help="gradient checkpointing (non-reentrant)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak, if not known here")
    args = ap.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("bench/gpu_mfu.py needs a CUDA GPU and this machine has none: nothing measured.")
        return 1
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    attn = args.attn
    if attn == "auto":
        attn = "flash_attention_2" if importlib.util.find_spec("flash_attn") else "sdpa"
    cfg = LlamaConfig(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                      num_key_value_heads=8, vocab_size=128256, max_position_embeddings=args.seq,
                      tie_word_embeddings=True, rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
                      use_cache=False)
    cfg._attn_implementation = attn
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    # the tied embedding is counted once, as the lm_head matmul (the input lookup does no FLOPs)
    matmul_params = sum(p.numel() for n, p in model.named_parameters() if "norm" not in n)
    if args.checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:
        p.data = p.data.float()  # the adapters train in fp32, the base stays bf16
    opt = torch.optim.AdamW(trainable, lr=1e-4, fused=True)
    ids = torch.randint(0, cfg.vocab_size, (args.batch, args.seq), device="cuda")

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0

    tokens = args.batch * args.seq * args.steps
    L, d, s = cfg.num_hidden_layers, cfg.hidden_size, args.seq
    flops_per_token = 4 * matmul_params + 12 * L * s * d
    achieved = flops_per_token * tokens / dt
    name = torch.cuda.get_device_name()
    peak = args.peak_tflops or peak_tflops(name)
    print(f"GPU: {name}; attention {attn}; checkpointing {'on' if args.checkpointing else 'off'}")
    print(f"model: {matmul_params / 1e9:.2f}B matmul parameters, LoRA {sum(p.numel() for p in trainable) / 1e6:.1f}M "
          f"trainable; batch {args.batch} x seq {args.seq}")
    print(f"tokens/s: {tokens / dt:,.0f}   model TFLOP/s: {achieved / 1e12:.1f}   "
          f"peak memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    if peak:
        print(f"MFU: {100 * achieved / (peak * 1e12):.1f} % of {peak:.0f} TFLOP/s dense bf16 (goal >= 35 % on H100-class)")
    else:
        print("MFU: unknown peak for this GPU; pass --peak-tflops")
    return 0


if __name__ == "__main__":
    sys.exit(main())
