"""The quality harness's output: the JSON document, the PNG plots and the console summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ADVERSARIAL_RULES", "plots", "report", "strip"]

ADVERSARIAL_RULES = {
    "cachefleet": "Cachefleet (threshold + guards + verifier)",
    "cachefleet_no_verifier": "threshold + guards",
    "cosine_only": "cosine threshold only",
    "redisvl_default_rule": "RedisVL rule (cos >= 0.90)",
    "gptcache_default_rule": "GPTCache rule (cos >= 0.60)",
}


def plots(result: dict[str, Any], out: Path) -> None:
    """Write quality_clinc.png, quality_adversarial.png and quality_stream.png (with a stream)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rules = result["clinc"]["rules"]
    names = {
        "cachefleet": "Cachefleet (threshold + guards + verifier)",
        "cachefleet_no_verifier": "threshold + guards",
        "cachefleet_no_guards": "cosine threshold only",
        "redisvl_default_rule": "RedisVL rule",
        "gptcache_default_rule": "GPTCache rule",
    }
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    for key, label in names.items():
        sweep = rules[key]["sweep"]
        hit = [row["hit_ratio"] for row in sweep]
        left.plot(hit, [row["precision"] for row in sweep], label=label)
        right.plot(hit, [row["error_rate"] for row in sweep], label=label)
        default = rules[key].get("default")
        if default is not None and key != "cachefleet_no_guards":
            left.scatter([default["hit_ratio"]], [default["precision"]], marker="o")
            right.scatter([default["hit_ratio"]], [default["error_rate"]], marker="o")
    right.axhline(0.01, color="grey", linestyle=":", linewidth=1)
    left.set(xlabel="hit ratio", ylabel="hit precision", title="CLINC150: precision vs hit ratio")
    right.set(
        xlabel="hit ratio",
        ylabel="error rate (wrong hits / requests)",
        title="CLINC150: error rate vs hit ratio (dots: defaults)",
    )
    right.set_ylim(0, 0.06)
    left.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out / "quality_clinc.png", dpi=110)
    plt.close(figure)

    tables = result["adversarial"]["rules"]["frozen"]
    classes = [row for row in tables["cachefleet"] if row not in ("traps", "paraphrases")]
    figure, axis = plt.subplots(figsize=(12, 4.8))
    width = 0.8 / len(ADVERSARIAL_RULES)
    for k, (rule, label) in enumerate(ADVERSARIAL_RULES.items()):
        values = [tables[rule][row]["served"] for row in classes]
        axis.bar(np.arange(len(classes)) + k * width, values, width, label=label)
    axis.set_xticks(np.arange(len(classes)) + 0.4 - width / 2, classes, rotation=20)
    axis.set(
        ylabel="share served from cache",
        title="Adversarial pairs, frozen split: paraphrases should be served, traps must not",
        ylim=(0, 1.3),
    )
    axis.legend(fontsize=8, loc="upper center", ncol=3)
    figure.tight_layout()
    figure.savefig(out / "quality_adversarial.png", dpi=110)
    plt.close(figure)

    stream = result.get("stream")
    if stream:
        figure, axis = plt.subplots(figsize=(8, 4.5))
        for key, curve in stream["cumulative_wrong"].items():
            axis.plot(
                range(1, len(curve) + 1),
                curve,
                label=f"{names.get(key + '_default_rule', names.get(key, key))}",
            )
        axis.set(
            xlabel="requests (shuffled, from an empty cache)",
            ylabel="wrong answers served",
            title="CLINC150 stream: cumulative wrong answers",
        )
        axis.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(out / "quality_stream.png", dpi=110)
        plt.close(figure)


def strip(result: dict[str, Any]) -> dict[str, Any]:
    """The JSON document: stream curves thinned to 200 points."""
    stream = result.get("stream")
    if stream:
        n = stream["requests"]
        step = max(1, n // 200)
        stream["cumulative_wrong"] = {
            key: curve[step - 1 :: step] for key, curve in stream["cumulative_wrong"].items()
        }
        stream["curve_step"] = step
    return result


def report(result: dict[str, Any]) -> None:
    """Print the summary: CLINC rules, the peers' error rates, QQP, adversarial, the choice."""
    rules = result["clinc"]["rules"]
    print()
    print(f"CLINC150 ({result['clinc']['queries']} queries, {result['clinc']['train']} cached)")
    print(
        f"{'rule':32s} {'default hit':>11s} {'default err':>11s} "
        f"{'best hit@1%':>11s} {'best hit@2%':>11s}"
    )
    for key, row in rules.items():
        default = row.get("default", {})
        print(
            f"{key:32s} {default.get('hit_ratio', 0):11.3f} {default.get('error_rate', 0):11.4f} "
            f"{row['best_hit_ratio_at_1pct']:11.3f} {row['best_hit_ratio_at_2pct']:11.3f}"
        )
    for peer, row in result["clinc"]["equal_error_rate"].items():
        setting = row["cachefleet_setting"]
        print(
            f"at {peer}'s error rate {row['peer_error_rate']:.4f}: "
            f"peer {row['peer_hit_ratio']:.3f}, "
            f"Cachefleet {row['cachefleet_hit_ratio']:.3f} (guards {setting['guards'] or 'off'}, "
            f"lexical weight {setting['lexical_weight']}; shipped setting "
            f"{row['shipped_setting_hit_ratio']:.3f})"
        )
        for half in row["held_out"]:
            print(
                f"    held-out half: Cachefleet {half['cachefleet']['hit_ratio']:.3f} hits at "
                f"{half['cachefleet']['error_rate']:.4f} error vs peer "
                f"{half['peer']['hit_ratio']:.3f} at {half['peer']['error_rate']:.4f}"
            )
    print("answer level (intent and quantities must match):")
    for key, row in result["clinc"]["answer_level"].items():
        default = row.get("default", {})
        print(
            f"  {key:30s} {default.get('hit_ratio', 0):11.3f} {default.get('error_rate', 0):11.4f} "
            f"{row['best_hit_ratio_at_1pct']:11.3f} {row['best_hit_ratio_at_2pct']:11.3f}"
        )
        if "equal_error_rate" in row:
            eq = row["equal_error_rate"]
            print(
                f"    at its error rate {eq['peer_error_rate']:.4f}: peer "
                f"{eq['peer_hit_ratio']:.3f}, Cachefleet {eq['cachefleet_hit_ratio']:.3f} "
                f"(lexical weight {eq['cachefleet_setting']['lexical_weight']}; shipped setting "
                f"{eq['shipped_setting_hit_ratio']:.3f})"
            )
    print(f"engine agreement with the analysis: {result['clinc']['engine_agreement']:.4f}")
    recall = result["clinc"]["engine_agreement_at_gptcache_error_rate"]
    if recall is not None:
        print(f"  ... at the GPTCache-error-rate setting: {recall:.4f}")
    qqp = result["qqp"]["rules"]
    print(
        f"QQP ({result['qqp']['pairs']} pairs): Cachefleet hit@FHR1% "
        f"{qqp['cachefleet']['hit_rate_at_fhr_1pct']:.3f} hit@FHR5% "
        f"{qqp['cachefleet']['hit_rate_at_fhr_5pct']:.3f} AUC {qqp['cachefleet']['roc_auc']:.3f}"
    )
    _report_adversarial(result["adversarial"])
    chosen = result["chosen"]
    print(
        f"chosen defaults: threshold {chosen['similarity_threshold']}, guards {chosen['guards']}, "
        f"verifier {chosen['verifier']}"
    )


def _report_adversarial(adversarial: dict[str, Any]) -> None:
    """Served share per class and rule, frozen split first (never tuned on)."""
    for split in ("frozen", "dev"):
        tables = adversarial["rules"][split]
        rules = list(ADVERSARIAL_RULES)
        print(
            f"adversarial pairs, {split} split ({adversarial['by_split'][split]} pairs): "
            "share served (traps must not be, paraphrases should be)"
        )
        print(f"  {'class':16s} {'n':>4s} " + " ".join(f"{rule[:14]:>14s}" for rule in rules))
        for row in tables["cachefleet"]:
            cells = " ".join(f"{tables[rule][row]['served']:14.3f}" for rule in rules)
            print(f"  {row:16s} {tables['cachefleet'][row]['pairs']:4d} {cells}")
    print(f"  engine agreement with the analysis: {adversarial['engine_agreement']:.4f}")
