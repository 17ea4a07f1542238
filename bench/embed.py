"""Embedding benchmark: docs/s of the embedding settings against the old path, side by side.

    python bench/embed.py [--shared ../shared] [--repeat 2] [--loaded 1] [--busy 2] [--out docs/speed.md]

Texts: the first ``--short`` (2,000) GoogleNews T titles and the first ``--long`` (300) ECB+
articles cut at 2,000 characters (as ``article_text`` cuts).  Candidates:

- ``old``: the path before issue 19, ``SentenceTransformer.encode`` in fp32, 32 texts a pass (padded
  to the longest of the 32), 2 torch threads;
- ``fp32``, ``bf16``: ``SentenceTransformerEmbedder`` (texts grouped by padded length, about
  ``EMBED_BATCH_TOKENS`` word pieces a pass) with 2 threads, in that precision;
- ``bf16-2048``, ``bf16-8192``: bf16 with another number of word pieces a pass;
- ``prev``: bf16 as shipped before the lengths per doubling and the workers (texts padded to steps
  of 16 word pieces, each pass split over the torch threads), 2 threads;
- ``split``: bf16 with today's lengths, but each pass split over 2 torch threads (no workers);
- ``shipped``: the defaults (precision, threads and batch size ``auto``);
- ``eager``: ``bf16`` with attention as plain matrix products and a softmax (transformers' ``eager``)
  instead of torch's fused kernel (``sdpa``, shipped);
- ``int8``: texts of ``INT8_MIN_PIECES`` word pieces or more through an int8 copy of the transformer
  (torch's dynamic quantization, smoothed, weights per output channel), one unpadded text a pass, shorter
  ones as ``eager``; with ``--quality``, ``--precisions int8`` scores it (not a setting of the package);
- ``ort8``: the same with onnxruntime's int8 (the transformer exported to ONNX, ``quantize_dynamic`` with
  weights per output channel, no smoothing) for the long texts, shorter ones as ``bf16``; building its
  model once needs the ``onnx`` package (not a dependency: ``pip install onnx`` where the bench runs);
- ``old@1``, ``bf16@1``, ``prev@1``, ``eager@1``, ``int8@1``, ``ort8@1``: the same on one thread (their
  docs per CPU-second stand for a quiet core's speed when the machine is busy: waiting is not counted,
  and one thread spins on no barrier).

Each candidate runs in a fresh process (loading the model is not timed; a few texts warm it up), the
candidates in a rotated order each round, ``--repeat`` rounds as the machine is, then ``--loaded``
rounds with ``--busy`` processes spinning on the CPU.  Reported per candidate and condition: the
median docs/s and its ratio to ``old``'s median in the same condition, the 1-minute load average
around the runs; the cosine of each vector to ``old``'s (mean, minimum); and whether every round
gave the same vectors (bytes), quiet and loaded alike (thread counts differ between them).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SECTION = "embed"
CANDIDATES = ("old", "prev", "split", "fp32", "bf16", "bf16-2048", "bf16-8192", "shipped", "eager", "int8", "ort8",
              "old@1", "prev@1", "bf16@1", "eager@1", "int8@1", "ort8@1")

INT8_MIN_PIECES = 128
"""``int8``: texts of at least this many word pieces run in int8, one unpadded text a pass, so that the
activations' int8 scale (one per pass) is the text's own: its vector does not depend on the other texts.
Shorter ones run as ``eager`` (bf16, grouped by padded length): one text a pass in int8 took 4.2 ms for 8
word pieces where a bf16 pass of 512 such texts took 1.1 ms a text, and about as long as bf16 at 128
(docs/speed.md).  Attention stays torch's fused kernel in fp32 (plain matrix products, in fp32 or bf16,
were no faster there)."""

INT8_ALPHA = 0.8
"""``int8``: how much of each Linear input channel's range moves into its weights before quantizing
(SmoothQuant's alpha, 0 none to 1 all): MiniLM's activations have a few channels 10–30 times wider than
the rest, and the one int8 scale per pass flattens the rest.  Cosine to fp32 on 60 ECB+ articles: 0.93
with weights per tensor, 0.982 per output channel, 0.900 smoothed at 0.5, 0.996 at 0.8 and 0.85."""

CALIBRATION_TEXTS = (
    "Central bank holds interest rates steady as inflation eases",
    "Storm leaves thousands without power across the coast",
    "Tech company shares fall after quarterly results miss forecasts",
    "Minister resigns amid row over hospital funding",
    "Striker's late goal sends champions into the cup final",
    "Scientists report new treatment slows memory loss in trial",
    "Police arrest two men after overnight shooting downtown",
    "Election officials begin recount in tight mayoral race",
    "The city council voted on Tuesday to approve a new budget that raises spending on schools and public "
    "transport by 4.5% next year, while cutting the money set aside for road repairs. The mayor said the plan "
    "would help families who depend on buses and trains, but opposition members warned that the cuts would "
    "leave many streets in poor condition. About 300 residents attended the meeting, and several of them "
    "spoke against a proposed increase in parking fees. The budget will take effect on January 1 after a final "
    "reading next month. Officials expect the changes to cost around $12 million, most of it paid for by a "
    "rise in property taxes and a grant from the state government.",
    "A magnitude 6.1 earthquake struck off the northern coast early on Sunday, shaking buildings in several "
    "towns and sending people running into the streets, according to the national geological survey. There "
    "were no immediate reports of deaths, though local media said at least a dozen people were treated for "
    "minor injuries and a bridge was closed while engineers checked it for damage. The quake hit at a depth of "
    "about 10 kilometres, and aftershocks were felt for several hours. Authorities briefly issued a tsunami "
    "warning before lifting it. Schools in the region will stay closed on Monday, the education ministry said, "
    "and rescue teams have been sent to villages in the hills where phone lines are down.",
    "Shares in the carmaker rose sharply on Wednesday after it reported better than expected profits for the "
    "third quarter and raised its forecast for the full year. The company said strong demand for electric "
    "vehicles in Europe and China had offset higher costs for batteries and steel, and that it planned to hire "
    "2,000 more workers at its plants by the end of next year. Analysts had expected a fall in earnings because "
    "of supply problems that forced several factories to stop production over the summer. The chief executive "
    "told reporters that the shortage of computer chips was easing, but warned that prices for raw materials "
    "could remain high well into 2024. The results sent the wider market higher, with the main index closing "
    "up 1.2 percent.",
    "The former president appeared in court on Thursday to answer charges of corruption and abuse of power, in "
    "a case that has divided the country. Hundreds of supporters gathered outside the building, some carrying "
    "flags and banners, while police kept them apart from a smaller group of protesters. Prosecutors allege "
    "that he accepted millions of dollars in bribes from construction firms in exchange for public contracts "
    "while he was in office. His lawyers deny the accusations and say the trial is politically motivated. The "
    "judge adjourned the hearing until next week after the defence asked for more time to study new evidence. "
    "If convicted, he could face up to 15 years in prison.",
)
"""``int8``'s calibration: news-like text written for this bench (no corpus text), run once in fp32 to
find each Linear input channel's widest value.  Each channel counts as at least as wide as the median
one, so that a channel these texts hardly reached cannot swamp the others when a text does: without that
floor these texts gave cosine 0.947 on ECB+ articles (5 BBC articles and 37 titles: 0.995), with it 0.996."""


def eager_attention(model: Any) -> None:
    """Attention as plain matrix products and a softmax instead of torch's fused CPU kernel (whose
    blocks suit heads wider than MiniLM's 32)."""
    model.set_attn_implementation("eager")


def int8_transformer(model: Any) -> Any:
    """A copy of ``model``'s transformer (a SentenceTransformer's first module's model, fp32) whose
    Linear layers (the pooler's aside) compute in int8: each input channel's range moved into the
    weights by :data:`INT8_ALPHA` (channels calibrated on :data:`CALIBRATION_TEXTS`, each at least the
    median channel's range, so that a channel the calibration hardly saw cannot blow up the others),
    the weights quantized per output channel, the activations per tensor at each pass (torch's dynamic
    quantization, fbgemm/VNNI).  torch 2.13 warns that its quantized tensors are deprecated (for
    torchao's): the warning is silenced here, and the API may go in a later torch."""
    import copy
    import warnings

    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    transformer = copy.deepcopy(model[0].model)
    linears = {name: module for name, module in transformer.named_modules()
               if isinstance(module, torch.nn.Linear) and not name.startswith("pooler")}
    ranges: dict[str, Any] = {}

    def record(name: str) -> Any:
        def hook(module: Any, inputs: Any, output: Any) -> None:
            seen = inputs[0].detach().abs().amax(dim=(0, 1))
            ranges[name] = torch.maximum(ranges[name], seen) if name in ranges else seen
        return hook

    hooks = [module.register_forward_hook(record(name)) for name, module in linears.items()]
    tokenizer = model[0].tokenizer
    with torch.inference_mode():
        for text in CALIBRATION_TEXTS:
            transformer(**tokenizer([text], truncation=True, max_length=256, return_tensors="pt"))
    for hook in hooks:
        hook.remove()

    class Smoothed(torch.nn.Module):
        def __init__(self, divisor: Any, linear: Any) -> None:
            super().__init__()
            self.divisor = divisor
            self.linear = linear

        def forward(self, x: Any) -> Any:
            return self.linear(x / self.divisor)

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch 2.13 deprecates its quantized tensors (to move to torchao)
        for name, linear in linears.items():
            seen = ranges[name].clamp(min=1e-5)
            seen = seen.clamp(min=float(seen.median()))
            scale = (seen ** INT8_ALPHA / linear.weight.abs().amax(dim=0).clamp(min=1e-5) ** (1 - INT8_ALPHA))
            linear.weight.mul_(scale)
            quantized = quantize_dynamic(torch.nn.Sequential(linear), {torch.nn.Linear: per_channel_dynamic_qconfig},
                                         dtype=torch.qint8)[0]
            parent, _, child = name.rpartition(".")
            setattr(transformer.get_submodule(parent), child, Smoothed(scale, quantized))
    return transformer.eval()


ORT_INT8_MODEL = Path(tempfile.gettempdir()) / "clustering-bench-embed" / "all-MiniLM-L6-v2-int8.onnx"
"""``ort8``'s model: the bundled transformer exported to ONNX (opset 17) and quantized by onnxruntime's
``quantize_dynamic`` (int8 weights per output channel, activations per tensor at each pass), built on
first use (that needs the ``onnx`` package, not a dependency of the project) and reused after."""


def ort_int8_session(model: Any) -> Any:
    """An onnxruntime session of :data:`ORT_INT8_MODEL` on one thread (the caller's: workers share it)."""
    import onnxruntime

    if not ORT_INT8_MODEL.exists():
        import torch
        from onnxruntime.quantization import QuantType, quantize_dynamic

        class Tokens(torch.nn.Module):
            def __init__(self, transformer: Any) -> None:
                super().__init__()
                self.transformer = transformer

            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
                return self.transformer(input_ids=input_ids, attention_mask=attention_mask,
                                        token_type_ids=token_type_ids)[0]

        ORT_INT8_MODEL.parent.mkdir(parents=True, exist_ok=True)
        exported = ORT_INT8_MODEL.with_suffix(".fp32.onnx")
        names = ["input_ids", "attention_mask", "token_type_ids"]
        ids = torch.ones(1, 16, dtype=torch.long)
        torch.onnx.export(Tokens(model[0].model.float().eval()), (ids, ids, torch.zeros_like(ids)), str(exported),
                          opset_version=17, dynamo=False, input_names=names, output_names=["tokens"],
                          dynamic_axes={name: {0: "texts", 1: "pieces"} for name in [*names, "tokens"]})
        quantize_dynamic(str(exported), str(ORT_INT8_MODEL), per_channel=True, weight_type=QuantType.QInt8)
        exported.unlink()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    return onnxruntime.InferenceSession(str(ORT_INT8_MODEL), options, providers=["CPUExecutionProvider"])


def int8_embedder(threads: int, backend: str = "torch") -> Any:
    """``int8`` (``backend`` torch) and ``ort8`` (onnxruntime): texts of :data:`INT8_MIN_PIECES` word
    pieces or more through :func:`int8_transformer` or :func:`ort_int8_session`, one text a pass (no
    padding: the activations' scale is the text's own, so its vector does not depend on the other
    texts), on ``threads`` workers of one thread; shorter texts in bf16, grouped by padded length (with
    torch: as ``eager``; with onnxruntime: as ``bf16``)."""
    import numpy as np
    import torch

    from clustering import embed

    class Int8Embedder(embed.SentenceTransformerEmbedder):
        def variant(self) -> str:
            return f"{self.model}-{'int8' if backend == 'torch' else 'ort8'}"

        def _load(self) -> Any:
            if self._model is None:
                model = super()._load()
                if backend == "torch":
                    eager_attention(model[0].model)
                    self.quantized = int8_transformer(model)
                else:
                    self.session = ort_int8_session(model)
                model[0].to(torch.bfloat16)
            return self._model

        def _encode(self, model: Any, texts: list[str]) -> Any:
            with self._tokenizing:
                encoded = model[0].tokenizer(texts, truncation=True, max_length=int(model.max_seq_length))
            long = [i for i, ids in enumerate(encoded["input_ids"]) if len(ids) >= INT8_MIN_PIECES]
            short = [i for i, ids in enumerate(encoded["input_ids"]) if len(ids) < INT8_MIN_PIECES]
            vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
            if short:
                vectors[short] = super()._encode(model, [texts[i] for i in short])

            def run(rows: list[int]) -> None:
                if backend != "torch":
                    for row in rows:
                        ids = np.array([encoded["input_ids"][row]], dtype=np.int64)
                        tokens = self.session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids),
                                                         "token_type_ids": np.zeros_like(ids)})[0][0]
                        pooled = tokens.astype(np.float32).mean(axis=0)
                        vectors[row] = pooled / np.linalg.norm(pooled)
                    return
                torch.set_num_threads(1)
                with torch.inference_mode():
                    for row in rows:
                        ids = torch.tensor([encoded["input_ids"][row]])
                        tokens = self.quantized(input_ids=ids, attention_mask=torch.ones_like(ids))[0]
                        vectors[row] = torch.nn.functional.normalize(tokens.mean(dim=1), dim=1)[0].numpy()

            workers = min(self.threads, len(long))
            if workers <= 1:
                run(long)
            elif long:
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(workers) as pool:
                    for done in [pool.submit(run, long[w::workers]) for w in range(workers)]:
                        done.result()
            return vectors

    return Int8Embedder(device="cpu", precision="fp32", threads=threads)


def ort8_embedder(threads: int) -> Any:
    """``ort8``: :func:`int8_embedder` with onnxruntime."""
    return int8_embedder(threads, backend="ort")


def step16(tokens: int, limit: int) -> int:
    """The padded length before ``LENGTHS_PER_DOUBLING``: the next multiple of 16 word pieces."""
    return min(limit, max(16, -(-tokens // 16) * 16))


def load_texts(shared: Path, short: int, long: int) -> tuple[list[str], list[str]]:
    datasets = shared / "datasets"
    with open(datasets / "googlenews-yin2016" / "googlenews_T.jsonl", encoding="utf-8") as handle:
        titles = [json.loads(line)["text"] for line, _ in zip(handle, range(short), strict=False)]
    from clustering.embed import MAX_EMBED_CHARS

    with open(datasets / "ecbplus-cybulska2014" / "ecbplus_docs.jsonl", encoding="utf-8") as handle:
        articles = [json.loads(line)["text"][:MAX_EMBED_CHARS] for line, _ in zip(handle, range(long), strict=False)]
    return titles, articles


def child(candidate: str, shared: Path, short: int, long: int, out: Path) -> dict[str, Any]:
    """Embed the short and the long texts with ``candidate``; vectors to ``out`` (.npz)."""
    import numpy as np
    import torch

    from clustering import embed

    titles, articles = load_texts(shared, short, long)
    name, _, fixed = candidate.partition("@")
    fixed_threads = int(fixed) if fixed else 2
    if name == "old":
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(fixed_threads)
        model = SentenceTransformer(embed.resolve_model_path(embed.DEFAULT_MODEL), device="cpu")

        def run(texts: list[str]) -> Any:
            return model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True,
                                show_progress_bar=False)
        threads, precision = fixed_threads, "fp32"
    elif name in ("int8", "ort8"):
        embedder = int8_embedder(fixed_threads, backend="torch" if name == "int8" else "ort")
        run = embedder.embed
        embedder.dimension  # noqa: B018 - loads the model
        threads, precision = fixed_threads, f"{name} from {INT8_MIN_PIECES} pieces, else bf16"
    else:
        settings: dict[str, Any] = {"device": "cpu"}
        if name == "eager":
            loader = embed.SentenceTransformerEmbedder._load

            def eager_load(self: Any) -> Any:
                if self._model is None:
                    eager_attention(loader(self)[0].model)
                return loader(self)
            embed.SentenceTransformerEmbedder._load = eager_load  # type: ignore[method-assign]
            name = "bf16"
        if name in ("prev", "split"):
            embed.THREADS_AS_WORKERS = False
            if name == "prev":
                embed.padded_length = step16
            name = "bf16"
        if name != "shipped":
            precision, _, tokens = name.partition("-")
            settings.update(precision=precision, threads=fixed_threads)
            if tokens:
                embed.EMBED_BATCH_TOKENS = int(tokens)
        embedder = embed.SentenceTransformerEmbedder(**settings)
        run = embedder.embed
        embedder.dimension  # noqa: B018 - loads the model
        threads = embed.resolve_threads(embedder.threads)
        precision = embedder.resolved_precision or "?"
    run(titles[:8] + articles[:2])  # warm-up
    load_before = os.getloadavg()[0]
    seconds, cpu_seconds, vectors = {}, {}, {}
    for kind, texts in (("short", titles), ("long", articles)):
        started, started_cpu = time.perf_counter(), time.process_time()
        vectors[kind] = np.asarray(run(texts), dtype=np.float32)
        seconds[kind], cpu_seconds[kind] = time.perf_counter() - started, time.process_time() - started_cpu
    np.savez(out, **vectors)
    return {"short": len(titles) / seconds["short"], "long": len(articles) / seconds["long"],
            "short_cpu": len(titles) / cpu_seconds["short"], "long_cpu": len(articles) / cpu_seconds["long"],
            "load": (load_before + os.getloadavg()[0]) / 2, "threads": threads, "precision": precision}


def spin() -> None:  # pragma: no cover - a busy process
    while True:
        pass


def run_child(candidate: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--child", candidate, str(args.shared), str(args.short),
                           str(args.long), str(out)], stdout=subprocess.PIPE, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}, check=False)
    if done.returncode != 0:
        raise SystemExit(f"child {candidate} failed ({done.returncode}); its error is above")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import numpy as np

    rounds: list[tuple[str, int]] = [("quiet", r) for r in range(args.repeat)] + \
                                    [("loaded", r) for r in range(args.loaded)]
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    vectors: dict[str, list[Any]] = {c: [] for c in args.candidates}
    for number, (condition, _) in enumerate(rounds):
        busy = [multiprocessing.Process(target=spin, daemon=True) for _ in range(args.busy if condition == "loaded"
                                                                                  else 0)]
        for process in busy:
            process.start()
        try:
            shift = number % len(args.candidates)
            for candidate in args.candidates[shift:] + args.candidates[:shift]:
                out = work / f"{candidate}-{number}.npz"
                result = run_child(candidate, args, out)
                runs.setdefault((condition, candidate), []).append(result)
                with np.load(out) as stored:
                    vectors[candidate].append({k: stored[k] for k in stored.files})
                print(f"  {condition} round {number}: {candidate:10s} {result['short']:7.1f} short/s "
                      f"{result['long']:6.2f} long/s  ({result['precision']}, {result['threads']} threads, "
                      f"load {result['load']:.1f})", file=sys.stderr, flush=True)
        finally:
            for process in busy:
                process.terminate()
                process.join()
    reference = vectors["old"][0] if "old" in vectors and vectors["old"] else None
    summary: dict[str, Any] = {"runs": {f"{c}/{k}": v for (c, k), v in runs.items()}, "candidates": {}}
    for candidate in args.candidates:
        first = vectors[candidate][0]
        same = all(np.array_equal(first[k], other[k]) for other in vectors[candidate][1:] for k in first)
        cosines = (np.concatenate([(first[k] * reference[k]).sum(axis=1) for k in ("short", "long")])
                   if reference is not None else np.ones(1))
        summary["candidates"][candidate] = {"cosine_mean": float(cosines.mean()), "cosine_min": float(cosines.min()),
                                            "same_vectors": same, "rounds": len(vectors[candidate])}
    return summary


def markdown(summary: dict[str, Any], args: argparse.Namespace) -> str:
    runs = summary["runs"]

    def median(condition: str, candidate: str, kind: str) -> float | None:
        done = runs.get(f"{condition}/{candidate}")
        return statistics.median(r[kind] for r in done) if done else None

    def cell(condition: str, candidate: str, kind: str) -> str:
        value, base = median(condition, candidate, kind), median(condition, "old", kind)
        if value is None:
            return "–"
        return f"{value:.1f} ({value / base:.2f}×)" if base else f"{value:.1f}"

    def cpu_cell(candidate: str, kind: str) -> str:
        def pooled(name: str) -> float | None:
            done = [r[kind] for key, rs in runs.items() if key.endswith("/" + name) for r in rs if kind in r]
            return statistics.median(done) if done else None
        value = pooled(candidate)
        # one thread against one thread where there is such a run (shipped runs on one when busy)
        single = candidate.endswith("@1") or candidate == "shipped"
        base = (single and pooled("old@1")) or pooled("old")
        if value is None:
            return "–"
        return f"{value:.1f} ({value / base:.2f}×)" if base else f"{value:.1f}"

    def loads(condition: str) -> str:
        values = [r["load"] for key, done in runs.items() if key.startswith(condition + "/") for r in done]
        return f"{min(values):.1f}–{max(values):.1f}" if values else "–"

    lines = [f"Produced by `python bench/embed.py --repeat {args.repeat} --loaded {args.loaded} --busy {args.busy}` "
             "(this section is rewritten by it). Every candidate in a fresh process, the order rotated each round; "
             f"{args.short:,} GoogleNews T titles (short) and {args.long} ECB+ articles cut at 2,000 characters "
             "(long); docs/s median of the rounds, in brackets the ratio to `old`'s median in the same condition. "
             f"Quiet: the machine as it was (load average {loads('quiet')}: 2 cores shared with other work); "
             f"loaded: {args.busy} more processes spinning on the CPU (load average {loads('loaded')}). "
             "Cosine to `old`'s vectors over all texts; same vectors: every round's bytes equal "
             "(loaded rounds included, where `shipped` runs on fewer threads).", "",
             "Docs per CPU-second (all rounds' median; ratio to the same thread count's `old`) is what a busy "
             "machine cannot hide: the time the process ran, not the time it waited.", "",
             "| candidate | precision, threads | short docs/s quiet | long docs/s quiet | short loaded | long loaded | "
             "short / long docs per CPU-s | cosine to old mean / min | same vectors |",
             "|---|---|---|---|---|---|---|---|---|"]
    for candidate, facts in summary["candidates"].items():
        threads = sorted({(r["precision"], r["threads"]) for key, done in runs.items()
                          if key.endswith("/" + candidate) for r in done})
        shown = ", ".join(sorted({p for p, _ in threads})) + "; " + "/".join(str(t) for _, t in threads) + " threads"
        lines.append(f"| `{candidate}` | {shown} | {cell('quiet', candidate, 'short')} | {cell('quiet', candidate, 'long')} | "
                     f"{cell('loaded', candidate, 'short')} | {cell('loaded', candidate, 'long')} | "
                     f"{cpu_cell(candidate, 'short_cpu')} / {cpu_cell(candidate, 'long_cpu')} | "
                     f"{facts['cosine_mean']:.5f} / {facts['cosine_min']:.5f} | "
                     f"{'yes' if facts['same_vectors'] else 'no'} ({facts['rounds']} rounds) |")
    return "\n".join(lines)


QUALITY_CORPORA = ("ECB+", "GoogleNews T", "GoogleNews TS", "GoogleNews S")


def quality(args: argparse.Namespace) -> str:
    """B³ F1 (batch, file order) of each corpus and the near-duplicate benchmark's figures, with the
    vectors of each precision (cached per precision under ~/.cache/clustering/embeddings); the
    near-duplicate benchmark once more with dedup's approximate search forced on it."""
    sys.path.insert(0, str(ROOT / "bench"))
    from quality import dedup_rows, load_corpus

    from clustering import dedup
    from clustering.config import Config
    from clustering.embed import make_embedder, resolve_threads
    from clustering.eval import DEFAULT_CACHE_DIR, CachedEmbedder, evaluate

    corpora = [c for c in args.quality.split(",") if c]
    lines = ["| precision | " + " | ".join(f"B³ F1 {c}" for c in corpora) +
             " | near-dup precision / recall / F1 | near-dup, approximate search forced: precision / recall |",
             "|---|" + "---|" * len(corpora) + "---|---|"]
    for precision in args.precisions.split(","):
        inner = (int8_embedder(resolve_threads("auto"), "torch" if precision == "int8" else "ort")
                 if precision in ("int8", "ort8") else make_embedder(Config().model, device="cpu", precision=precision))
        embedder = CachedEmbedder(inner, DEFAULT_CACHE_DIR)
        cells = []
        for name in corpora:
            result = evaluate(load_corpus(args.shared, name), config=Config(), embedder=embedder, cache_dir=None)
            cells.append(f"{result.story['b3_f1']:.4f}")
            print(f"  {precision} {name}: B3 F1 {cells[-1]}", file=sys.stderr, flush=True)
        _, figures = dedup_rows(args.shared, embedder)
        p_, r_, f_ = figures["clustering (ours, shipped defaults)"][:3]
        saved = dedup.APPROXIMATE_PAIRS, dedup.IVF_ROWS_PER_LIST
        # every search approximate, with lists as small as a 100k window's share of them probed
        dedup.APPROXIMATE_PAIRS, dedup.IVF_ROWS_PER_LIST = 0, max(1, figures["docs"] // 390)
        try:
            _, forced = dedup_rows(args.shared, embedder)
        finally:
            dedup.APPROXIMATE_PAIRS, dedup.IVF_ROWS_PER_LIST = saved
        fp, fr = forced["clustering (ours, shipped defaults)"][:2]
        embedder.save()
        lines.append(f"| {precision} | " + " | ".join(cells) + f" | {p_:.4f} / {r_:.4f} / {f_:.4f} | "
                     f"{fp:.4f} / {fr:.4f} |")
        print(lines[-1], file=sys.stderr, flush=True)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        candidate, shared, short, long, out = argv[1:]
        print(json.dumps(child(candidate, Path(shared), int(short), int(long), Path(out))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--short", type=int, default=2000, help="GoogleNews T titles")
    parser.add_argument("--long", type=int, default=300, help="ECB+ articles (cut at 2,000 characters)")
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--repeat", type=int, default=2, help="rounds on the machine as it is")
    parser.add_argument("--loaded", type=int, default=1, help="rounds with --busy spinning processes")
    parser.add_argument("--busy", type=int, default=2, help="spinning processes in a loaded round")
    parser.add_argument("--quality", metavar="CORPORA", help="only the quality of fp32 and bf16 vectors on these "
                        f"corpora (of {', '.join(QUALITY_CORPORA)})")
    parser.add_argument("--precisions", default="fp32,bf16",
                        help="with --quality: the precisions scored (int8, ort8: this bench's candidates)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "speed.md", help="markdown file to update")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.quality:
        text = ("## Embedding: quality by precision\n\nProduced by `python bench/embed.py --quality "
                f"'{args.quality}'` (this section is rewritten by it): `clustering eval`'s B³ F1 of the story "
                "stage (batch, file order, shipped settings) and the near-duplicate benchmark (bench/neardup.py, "
                "seed 13, as bench/quality.py scores it) with the vectors of each precision; in the last column "
                "every dedup search goes through the approximate index, its lists as small as a 100k window's "
                "(390 lists, 32 probed).\n\n" + quality(args))
        print(text)
        if not args.no_write:
            from scale import write_section

            write_section(args.out, f"{SECTION}-quality", text)
        return 0
    args.candidates = [c for c in args.candidates.split(",") if c]
    if "old" not in args.candidates:
        args.candidates.insert(0, "old")
    with tempfile.TemporaryDirectory(prefix="bench-embed-") as work:
        summary = measure(args, Path(work))
    text = "## Embedding: precision, threads and batches\n\n" + markdown(summary, args)
    print(text)
    if not args.no_write:
        from scale import write_section  # bench/scale.py, beside this file

        write_section(args.out, SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
