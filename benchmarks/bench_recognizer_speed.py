"""Recognizer speed with ONNX Runtime: per-crop latency (batch 1) and batch throughput for a fixed decode
length, fp32 against the int8 bundle; plus training steps/s of a config. Prints figures; it is not a test.

    .venv/bin/python benchmarks/bench_recognizer_speed.py                    # bundled model, else random weights
    .venv/bin/python benchmarks/bench_recognizer_speed.py --model runs/rec/export/recognizer
    .venv/bin/python benchmarks/bench_recognizer_speed.py --train-config configs/recognizer_small.yaml
    .venv/bin/python benchmarks/bench_recognizer_speed.py --model recognizer \
        --crops work/recdata/synthetic_val/manifest.jsonl      # also real crops of <= 40 tokens, real decoding

Every decode is forced to exactly `--tokens` steps (no early EOS), so the figure is the cost of a crop of
that many tokens whatever the weights; a 256 px wide crop (a ~20-character formula at height 64) is used.
Without a bundled model, a random-weight model of the default architecture is exported (architecture speed).
The load average is printed: on a shared 2-core machine other jobs inflate wall times, so CPU time (all
threads of this process) is printed beside them; with 1 thread it approximates the wall time on an idle core,
and "CPU-bound" throughput = threads x crops per CPU-second is what idle cores would sustain.
With `--crops`, the recognizer is also called as users call it (`recognizer([image])`: preprocessing, greedy
decoding that stops at EOS) on the manifest's first `--crop-limit` crops whose reference has at most `--tokens`
tokens: p50/p90 per crop at batch 1 and the throughput of batches of 16.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from susik.runtime.recognizer import OnnxRecognizer


def _forced_decode(recognizer: OnnxRecognizer, batch: np.ndarray, tokens: int) -> None:
    widths = np.full(batch.shape[0], batch.shape[3], dtype=np.int64)
    cross, bias = recognizer.encode(batch, widths)
    past = recognizer.empty_cache(batch.shape[0])
    current = np.full((batch.shape[0], 1), recognizer.vocab.bos_id, dtype=np.int64)
    for position in range(tokens):
        logits, past = recognizer.step(current, np.array([position], dtype=np.int64), bias, past, cross)
        current = logits.argmax(-1)[:, None].astype(np.int64)


def _time(recognizer: OnnxRecognizer, batch_size: int, width: int, tokens: int, repeats: int) -> tuple[float, float]:
    """Median wall seconds and median CPU seconds (all threads of this process) of one forced decode."""
    batch = np.random.default_rng(0).random((batch_size, 1, recognizer.preprocess_config.height, width),
                                            dtype=np.float32)
    _forced_decode(recognizer, batch, tokens)  # warm-up: allocations, thread pools
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        _forced_decode(recognizer, batch, tokens)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def _real_crops(recognizer: OnnxRecognizer, manifest: Path, max_tokens: int, limit: int) -> str:
    """p50/p90 ms per crop alone and crops/s in batches of 16, on real crops of at most `max_tokens` tokens."""
    import json

    from susik.latex.tokenizer import tokenize
    from susik.runtime.image_io import load_image

    crops = []
    for line in manifest.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if len(tokenize(record["latex"])) <= max_tokens:
            crops.append(load_image(manifest.parent / record["image"]))
        if len(crops) == limit:
            break
    recognizer(crops[:4])  # warm-up
    alone, alone_cpu = [], []
    for crop in crops:
        start, start_cpu = time.perf_counter(), time.process_time()
        recognizer([crop])
        alone.append(time.perf_counter() - start)
        alone_cpu.append(time.process_time() - start_cpu)
    start = time.perf_counter()
    for first in range(0, len(crops), 16):
        recognizer(crops[first : first + 16])
    rate = len(crops) / (time.perf_counter() - start)
    p50, p90 = (1000 * float(np.percentile(alone, q)) for q in (50, 90))
    p50_cpu = 1000 * float(np.median(alone_cpu))
    return f"{len(crops)} real crops of <= {max_tokens} tokens: batch 1 p50 {p50:.1f} ms (CPU {p50_cpu:.1f}), " \
           f"p90 {p90:.1f} ms; batches of 16: {rate:.1f} crops/s"


def _random_bundle(folder: Path, encoder_quant: str) -> tuple[Path, Path, Path, Path]:
    """fp32 and int8 graphs of a random-weight default model (vocab 500)."""
    import torch

    from susik.latex import Vocabulary
    from susik.models.recognizer import Recognizer, RecognizerConfig
    from susik.runtime.export import calibration_batches, export_graphs, quantize_decoder, quantize_encoder

    torch.manual_seed(0)
    vocab = Vocabulary([f"t{i}" for i in range(496)])
    model = Recognizer(RecognizerConfig(vocab_size=len(vocab))).eval()
    encoder, decoder = export_graphs(model, folder)
    rng = np.random.default_rng(0)
    crops = [(255 - 200 * (rng.random((48, int(w))) > 0.8)).astype(np.uint8) for w in rng.integers(60, 500, 16)]
    batches = calibration_batches(crops, model)
    encoder_q = quantize_encoder(encoder, folder / "encoder.int8.onnx", encoder_quant, batches)  # type: ignore[arg-type]
    decoder_q = quantize_decoder(decoder, folder / "decoder.int8.onnx")
    return encoder, decoder, encoder_q, decoder_q


def _train_speed(config_path: Path, steps: int, threads: int) -> None:
    import torch

    from susik.latex import Vocabulary
    from susik.models.recognizer import Recognizer
    from susik.models.train_recognizer import Batch, build_optimizer, build_scheduler, load_config, loss_fn

    torch.set_num_threads(threads)
    config = load_config(config_path)
    vocab = Vocabulary([f"t{i}" for i in range(496)])
    model = Recognizer(config.model.model_copy(update={"vocab_size": len(vocab)})).train()
    optimizer = build_optimizer(model, config.optim)
    scheduler = build_scheduler(optimizer, config.optim, config.steps)
    size = config.batch_size
    batch = Batch(torch.rand(size, 1, config.model.preprocess.height, 256), torch.full((size,), 256),
                  torch.randint(4, len(vocab), (size, 32)))
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        loss = loss_fn(model, batch, config.optim.label_smoothing, vocab.pad_id)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        times.append(time.perf_counter() - start)
    median = statistics.median(times[1:])
    print(f"training {config_path} ({threads} threads): batch {size}, 64x256 crops, 31 target tokens: "
          f"{median:.2f} s/step median = {1 / median:.2f} steps/s ({size / median:.0f} crops/s)")


def main(
    model: Annotated[str, typer.Option(help="bundle folder or record.json; default: random weights")] = "",
    tokens: Annotated[int, typer.Option(help="decode steps per crop")] = 40,
    width: Annotated[int, typer.Option(help="preprocessed crop width in pixels")] = 256,
    repeats: Annotated[int, typer.Option(help="timed runs per figure")] = 30,
    threads: Annotated[str, typer.Option(help="ONNX Runtime intra-op thread counts to try")] = "1,2",
    encoder_quant: Annotated[str, typer.Option(help="random-weight bundle: none, dynamic or static")] = "static",
    train_config: Annotated[Path | None, typer.Option(help="also time training steps of this config")] = None,
    train_steps: Annotated[int, typer.Option(help="timed training steps")] = 5,
    crops: Annotated[Path | None, typer.Option(help="also time real crops from this manifest")] = None,
    crop_limit: Annotated[int, typer.Option(help="real crops to time")] = 200,
) -> None:
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as scratch:
        if model:
            from susik.models.registry import resolve

            record = resolve(model)
            variants = {"bundle": (record.file("encoder"), record.file("decoder"))}
            vocab_path, preprocess_config, stride = record.file("vocab"), record.preprocess, record.stride
        else:
            encoder, decoder, encoder_q, decoder_q = _random_bundle(Path(scratch), encoder_quant)
            variants = {"fp32": (encoder, decoder), "int8 decoder": (encoder, decoder_q),
                        f"int8 ({encoder_quant} encoder)": (encoder_q, decoder_q)}
            from susik.latex import Vocabulary

            vocab_path = Path(scratch) / "vocab.json"
            Vocabulary([f"t{i}" for i in range(496)]).save(vocab_path)
            from susik.models.recognizer import RecognizerConfig

            default = RecognizerConfig(vocab_size=500)
            preprocess_config, stride = default.preprocess, default.total_stride
        from susik.latex import Vocabulary

        vocab = Vocabulary.load(vocab_path)
        for name, (encoder_path, decoder_path) in variants.items():
            size = (encoder_path.stat().st_size + decoder_path.stat().st_size) / 1e6
            for count in (int(t) for t in threads.split(",")):
                recognizer = OnnxRecognizer(encoder_path, decoder_path, vocab, preprocess_config, stride,
                                            threads=count)
                single, single_cpu = _time(recognizer, 1, width, tokens, repeats)
                encode_only, encode_cpu = _time(recognizer, 1, width, 0, repeats)
                line = (f"{name:<22} {size:5.1f} MB  threads {count}: batch 1 p50 {1000 * single:6.1f} ms/crop "
                        f"(CPU {1000 * single_cpu:5.1f} ms; encoder {1000 * encode_only:4.1f}, CPU "
                        f"{1000 * encode_cpu:4.1f})")
                for batch_size in (8, 16):
                    timed, timed_cpu = _time(recognizer, batch_size, width, tokens, max(3, repeats // 5))
                    line += (f"; batch {batch_size}: {batch_size / timed:5.1f} crops/s (CPU-bound "
                             f"{count * batch_size / timed_cpu:5.1f})")
                print(line, flush=True)
                if crops is not None:
                    print(f"{'':<22} {'':>8}  threads {count}: "
                          + _real_crops(recognizer, crops, tokens, crop_limit), flush=True)
    if train_config is not None:
        for count in (int(t) for t in threads.split(",")):
            _train_speed(train_config, train_steps, count)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    typer.run(main)
