"""The recognizer: a compact ResNet-like CNN encoder and a pre-LN transformer decoder (formula crop -> tokens).

The encoder turns a (B, 1, H, W) crop into a (H/s, W/s) feature map, adds 2D sinusoidal positions (any
width works, no table to outgrow) and flattens it row-major into the decoder's memory. The decoder has two
faces sharing one set of weights: `forward` (teacher forcing, all positions at once, for training) and
`step` (one token with a self-attention K/V cache, for decoding and the ONNX decoder-step graph). The
cross-attention K/V of the memory are computed once per batch by `cross_kv`. Caches are flat lists of
per-layer tensors [k0, v0, k1, v1, ...], each (B, heads, length, head_dim).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor, nn

from susik.runtime.preprocess import PreprocessConfig

NEG_INF = -1e4  # additive mask value: large enough to zero a softmax weight, safe in fp16/int8 graphs


class RecognizerConfig(BaseModel):
    """Architecture of the recognizer. Stored in every checkpoint and bundled record."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vocab_size: int | None = Field(None, ge=5, description="left out in YAML: set from the Vocabulary at training")
    preprocess: PreprocessConfig = Field(
        PreprocessConfig(), description="input geometry; width_multiple must equal the encoder's width stride"
    )
    stem_channels: int = Field(16, ge=4, description="first conv at 1/2 scale; thin because it sees most pixels")
    channels: tuple[int, ...] = Field(
        (32, 64, 128, 256), description="per stage; wide only at low resolution where pixels are few"
    )
    blocks: tuple[int, ...] = Field((1, 1, 2, 1), description="residual blocks per stage; depth where it is cheap")
    strides: tuple[tuple[int, int], ...] = Field(
        ((2, 2), (2, 2), (2, 2), (1, 1)),
        description="(h, w) stride of each stage's first block; with the stem 16x16: a 64-px crop gives 4 rows, "
        "enough for stacked fractions, at ~120 M multiply-adds per 64x256 crop",
    )
    d_model: int = Field(256, ge=8, description="decoder width; 256 is enough for a ~500-token vocabulary")
    heads: int = Field(8, ge=1, description="attention heads; d_model/heads = 32 per head")
    layers: int = Field(3, ge=1, description="decoder layers; 3 keeps per-token CPU latency near 0.5 ms")
    ffn: int = Field(1024, ge=8, description="feed-forward width, the usual 4 x d_model")
    dropout: float = Field(0.1, ge=0, lt=1, description="on attention outputs and FFN; small data needs it")
    max_tokens: int = Field(256, ge=8, description="longest sequence incl. BOS/EOS; sizes the position table")

    @model_validator(mode="after")
    def _check(self) -> RecognizerConfig:
        if not (len(self.channels) == len(self.blocks) == len(self.strides)):
            raise ValueError("channels, blocks and strides need one entry per stage")
        if self.d_model % self.heads:
            raise ValueError("d_model must be divisible by heads")
        stride_h, stride_w = self.total_stride
        if self.preprocess.width_multiple % stride_w:
            raise ValueError(f"preprocess.width_multiple must be a multiple of the width stride {stride_w}")
        if self.preprocess.height % stride_h:
            raise ValueError(f"preprocess.height must be a multiple of the height stride {stride_h}")
        return self

    @property
    def total_stride(self) -> tuple[int, int]:
        return 2 * math.prod(s[0] for s in self.strides), 2 * math.prod(s[1] for s in self.strides)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads


class ConvBN(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int, stride: tuple[int, int] | int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout)
        )


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs + shortcut)."""

    def __init__(self, cin: int, cout: int, stride: tuple[int, int]) -> None:
        super().__init__()
        self.conv1 = ConvBN(cin, cout, 3, stride)
        self.conv2 = ConvBN(cout, cout, 3)
        self.shortcut = ConvBN(cin, cout, 1, stride) if (cin != cout or stride != (1, 1)) else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.conv2(F.relu(self.conv1(x))) + self.shortcut(x))


def sinusoid_2d(height: int, width: int, dim: int, device: torch.device | None = None) -> Tensor:
    """(height * width, dim) positions: first half encodes the row, second half the column."""
    quarter = dim // 4
    freq = torch.exp(torch.arange(quarter, device=device, dtype=torch.float32) * (-math.log(10000.0) / quarter))
    ys = torch.arange(height, device=device, dtype=torch.float32)[:, None] * freq  # (H, q)
    xs = torch.arange(width, device=device, dtype=torch.float32)[:, None] * freq  # (W, q)
    row = torch.cat([ys.sin(), ys.cos()], dim=1)[:, None, :].expand(height, width, 2 * quarter)
    col = torch.cat([xs.sin(), xs.cos()], dim=1)[None, :, :].expand(height, width, 2 * quarter)
    pos = torch.cat([row, col], dim=2).reshape(height * width, 4 * quarter)
    return F.pad(pos, (0, dim - 4 * quarter))


class Encoder(nn.Module):
    def __init__(self, config: RecognizerConfig) -> None:
        super().__init__()
        self.stem = ConvBN(1, config.stem_channels, 3, 2)
        stages: list[nn.Module] = []
        cin = config.stem_channels
        for cout, count, stride in zip(config.channels, config.blocks, config.strides):
            blocks = [BasicBlock(cin, cout, tuple(stride))]
            blocks += [BasicBlock(cout, cout, (1, 1)) for _ in range(count - 1)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.project = nn.Linear(cin, config.d_model)
        self.norm = nn.LayerNorm(config.d_model)
        self.d_model = config.d_model

    def forward(self, images: Tensor) -> Tensor:
        """(B, 1, H, W) -> memory (B, h * w, d_model), row-major over the feature map."""
        features = self.stages(F.relu(self.stem(images)))
        _, _, height, width = features.shape
        flat = features.flatten(2).transpose(1, 2)  # (B, h*w, C)
        memory = self.project(flat) + sinusoid_2d(height, width, self.d_model, images.device)
        return self.norm(memory)


def memory_padding(widths: Tensor, feature_height: int, feature_width: int, stride_w: int) -> Tensor:
    """(B, h*w) bool, True where a memory position lies wholly in a batch's right padding."""
    valid_cols = torch.clamp((widths + stride_w - 1) // stride_w, min=1)  # (B,)
    cols = torch.arange(feature_width, device=widths.device)
    pad = cols[None, :] >= valid_cols[:, None]  # (B, w)
    return pad[:, None, :].expand(-1, feature_height, -1).reshape(widths.shape[0], feature_height * feature_width)


class SelfAttention(nn.Module):
    """Causal multi-head self-attention; one fused q/k/v projection (one MatMul per step, not three)."""

    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, d_model // heads
        self.scale = self.head_dim**-0.5  # a Python float: exports as a constant, not a Shape->Pow chain
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def forward(self, x: Tensor, causal: Tensor) -> Tensor:
        """Teacher forcing: x (B, T, d) with an additive causal mask (T, T)."""
        batch, length, dim = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        mixed = F.scaled_dot_product_attention(q, k, v, attn_mask=causal, dropout_p=self.dropout if self.training else 0.0)
        return self.out(mixed.transpose(1, 2).reshape(batch, length, dim))

    def step(self, x: Tensor, past_k: Tensor, past_v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One token x (B, 1, d) against the cache (B, heads, T, head_dim) -> output and the grown cache.

        Written with constant reshapes (-1 for the batch) so the exported graph carries no shape arithmetic:
        at ~0.5 ms a step, every extra node shows.
        """
        qkv = self.qkv(x).reshape(-1, 1, 3 * self.heads, self.head_dim).transpose(1, 2)
        q, k, v = qkv.split(self.heads, dim=1)
        keys = torch.cat([past_k, k], dim=2)
        values = torch.cat([past_v, v], dim=2)
        weights = torch.softmax(torch.matmul(q, keys.transpose(-1, -2)) * self.scale, dim=-1)
        mixed = torch.matmul(weights, values).transpose(1, 2).reshape(-1, 1, self.heads * self.head_dim)
        return self.out(mixed), keys, values


class CrossAttention(nn.Module):
    """Multi-head attention over the encoder memory, whose K/V are projected once per batch (`memory_kv`)."""

    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, d_model // heads
        self.scale = self.head_dim**-0.5
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def memory_kv(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """memory (B, S, d) -> keys, values (B, heads, S, head_dim)."""
        batch, length, _ = memory.shape
        k, v = self.kv(memory).view(batch, length, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return k, v

    def forward(self, x: Tensor, keys: Tensor, values: Tensor, bias: Tensor | None) -> Tensor:
        """Teacher forcing: x (B, T, d); bias broadcastable to (B, heads, T, S)."""
        batch, length, dim = x.shape
        q = self.q(x).view(batch, length, self.heads, self.head_dim).transpose(1, 2)
        mixed = F.scaled_dot_product_attention(q, keys, values, attn_mask=bias, dropout_p=self.dropout if self.training else 0.0)
        return self.out(mixed.transpose(1, 2).reshape(batch, length, dim))

    def step(self, x: Tensor, keys: Tensor, values: Tensor, bias: Tensor) -> Tensor:
        """One token x (B, 1, d); bias (B, 1, 1, S). Same maths as `forward`, in plain exportable ops."""
        q = self.q(x).reshape(-1, 1, self.heads, self.head_dim).transpose(1, 2)
        weights = torch.softmax(torch.matmul(q, keys.transpose(-1, -2)) * self.scale + bias, dim=-1)
        mixed = torch.matmul(weights, values).transpose(1, 2).reshape(-1, 1, self.heads * self.head_dim)
        return self.out(mixed)


class DecoderLayer(nn.Module):
    def __init__(self, config: RecognizerConfig) -> None:
        super().__init__()
        d = config.d_model
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.self_attn = SelfAttention(d, config.heads, config.dropout)
        self.cross_attn = CrossAttention(d, config.heads, config.dropout)
        self.ffn = nn.Sequential(nn.Linear(d, config.ffn), nn.GELU(), nn.Linear(config.ffn, d))
        self.drop = nn.Dropout(config.dropout)


class Decoder(nn.Module):
    def __init__(self, config: RecognizerConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.position = nn.Embedding(config.max_tokens, config.d_model)
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size)

    def cross_kv(self, memory: Tensor) -> list[Tensor]:
        """Cross-attention keys and values of every layer, flat [k0, v0, k1, v1, ...], each (B, heads, S, hd).

        One tensor per layer and kind (not one stacked tensor): the step graph then reads them in place
        instead of splitting and re-concatenating the caches on every token.
        """
        return [t for layer in self.layers for t in layer.cross_attn.memory_kv(memory)]

    def forward(self, tokens: Tensor, memory: Tensor, memory_pad: Tensor | None = None) -> Tensor:
        """Teacher forcing: tokens (B, T) -> logits (B, T, vocab)."""
        length = tokens.shape[1]
        positions = torch.arange(length, device=tokens.device)
        x = self.embed(tokens) + self.position(positions)
        causal = torch.full((length, length), NEG_INF, device=tokens.device).triu(1)
        cross_bias = None if memory_pad is None else (memory_pad.float() * NEG_INF)[:, None, None, :]
        for layer in self.layers:
            keys, values = layer.cross_attn.memory_kv(memory)
            x = x + layer.drop(layer.self_attn(layer.norm1(x), causal))
            x = x + layer.drop(layer.cross_attn(layer.norm2(x), keys, values, cross_bias))
            x = x + layer.drop(layer.ffn(layer.norm3(x)))
        return self.head(self.norm(x))

    def step(
        self, tokens: Tensor, position: Tensor, cross_bias: Tensor, past: Sequence[Tensor], cross: Sequence[Tensor]
    ) -> tuple[Tensor, list[Tensor]]:
        """One decoding step with a cache.

        tokens (B, 1) int64; position (1,) int64, the index of these tokens; cross_bias (B, S) float, 0 or
        NEG_INF; past: flat [k0, v0, k1, v1, ...] self-attention caches (B, heads, T, head_dim) of the T
        earlier tokens; cross: from `cross_kv`. Returns logits (B, vocab) and the caches grown to T + 1.
        """
        x = self.embed(tokens) + self.position(position)[None]
        bias = cross_bias[:, None, None, :]
        present: list[Tensor] = []
        for i, layer in enumerate(self.layers):
            mixed, keys, values = layer.self_attn.step(layer.norm1(x), past[2 * i], past[2 * i + 1])
            present += [keys, values]
            x = x + mixed
            x = x + layer.cross_attn.step(layer.norm2(x), cross[2 * i], cross[2 * i + 1], bias)
            x = x + layer.ffn(layer.norm3(x))
        logits = self.head(self.norm(x)).reshape(-1, self.config.vocab_size)
        return logits, present

    def empty_cache(self, batch: int, device: torch.device | None = None) -> list[Tensor]:
        shape = (batch, self.config.heads, 0, self.config.head_dim)
        return [torch.zeros(shape, device=device) for _ in range(2 * self.config.layers)]


class Recognizer(nn.Module):
    def __init__(self, config: RecognizerConfig) -> None:
        super().__init__()
        if config.vocab_size is None:
            raise ValueError("RecognizerConfig.vocab_size must be set (from the Vocabulary) to build a model")
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    def encode(self, images: Tensor, widths: Tensor) -> tuple[Tensor, Tensor]:
        """-> memory (B, S, d) and its padding mask (B, S)."""
        memory = self.encoder(images)
        stride_h, stride_w = self.config.total_stride
        feature_h = images.shape[2] // stride_h
        feature_w = memory.shape[1] // feature_h
        return memory, memory_padding(widths, feature_h, feature_w, stride_w)

    def forward(self, images: Tensor, widths: Tensor, tokens: Tensor) -> Tensor:
        memory, pad = self.encode(images, widths)
        return self.decoder(tokens, memory, pad)

    @torch.no_grad()
    def greedy(self, images: Tensor, widths: Tensor, bos: int, eos: int, max_len: int) -> tuple[Tensor, Tensor]:
        """Greedy decode with the cache, for validation: token ids after BOS (B, <= max_len), EOS-padded,
        and the probability of each chosen token (B, <= max_len)."""
        memory, pad = self.encode(images, widths)
        cross = self.decoder.cross_kv(memory)
        bias = pad.float() * NEG_INF
        batch = images.shape[0]
        past = self.decoder.empty_cache(batch, images.device)
        tokens = torch.full((batch, 1), bos, dtype=torch.long, device=images.device)
        done = torch.zeros(batch, dtype=torch.bool, device=images.device)
        chosen_ids: list[Tensor] = []
        chosen_probs: list[Tensor] = []
        for position in range(min(max_len, self.config.max_tokens)):
            where = torch.tensor([position], device=images.device)
            logits, past = self.decoder.step(tokens, where, bias, past, cross)
            probs, ids = torch.softmax(logits, dim=-1).max(dim=-1)
            ids = torch.where(done, torch.full_like(ids, eos), ids)
            chosen_ids.append(ids)
            chosen_probs.append(torch.where(done, torch.ones_like(probs), probs))
            done |= ids == eos
            if bool(done.all()):
                break
            tokens = ids[:, None]
        return torch.stack(chosen_ids, dim=1), torch.stack(chosen_probs, dim=1)


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every ConvBN's BatchNorm into its conv (eval statistics), in place; for export."""
    for child in module.modules():
        if isinstance(child, ConvBN) and isinstance(child[1], nn.BatchNorm2d):
            fused = torch.nn.utils.fusion.fuse_conv_bn_eval(child[0].eval(), child[1].eval())
            child[0] = fused
            child[1] = nn.Identity()
    return module


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
