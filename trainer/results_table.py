"""docs/results.md's tables and stability plots from the evaluation rows and progress logs of train_world.sh runs.

    /usr/bin/python3 -m trainer.results_table docs/results/run1 docs/results/run2 --plots docs/results

Each RUN folder holds results/<model>.json (trainer.evaluate rows) and progress/<run>.jsonl (progress logs; a
student's steps are its row's, or else its log's last step). Prints
the Markdown tables (one row per model, later runs listed after earlier ones) and writes one PNG per backbone: FID
against step for every distillation run of that backbone in every RUN.
"""
import argparse
import glob
import json
import os
import sys

from PIL import Image, ImageDraw

from trainer import judge

NASA_SCALES = ("0.0", "0.5", "1.0")
ONE_OBJECT_FAILURES = tuple(reason for reason in judge.FAILURES  # those a one-object caption can fail on
                            if reason not in ("missing object", "binding", "left of"))
PLOT_W, PLOT_H, MARGIN, LEGEND_ROW = 560, 300, 48, 16
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf", "#000000", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#393b79", "#e7ba52",
          "#ad494a", "#637939")


def load_rows(run_dir: str) -> list:
    rows = []
    for path in sorted(glob.glob(os.path.join(run_dir, "results", "*.json"))):
        if os.path.basename(path).startswith("align-"):
            continue  # sample.py's guidance sweep, not an evaluation row
        with open(path) as f:
            row = json.load(f)
        row["name"] = os.path.splitext(os.path.basename(path))[0]
        row["run"] = os.path.basename(os.path.normpath(run_dir))
        rows.append(row)
    return rows


def steps_of(run_dir: str, name: str):
    path = os.path.join(run_dir, "progress", f"{name}.jsonl")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.loads(f.readlines()[-1])["step"]


def percent(value: float) -> str:
    return f"{100 * value:.1f}"


def quality_table(rows, run_dirs) -> str:
    lines = ["| run | model | method | steps | align 1-obj % | align 2-obj % | CLIP score | FID | ms/image (batch / 1) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        if row["method"] == "teacher":
            steps = row.get("sampler")
        elif row["method"] == "teacher-init":  # the teacher called once: every student before its first step
            steps = 0
        else:  # the evaluated student's own step (keep = best: before the run's last), else the run's last step
            steps = row["steps"] if "steps" in row else steps_of(run_dirs[row["run"]], row["name"])
        ms = row["ms_per_image"]
        lines.append(f"| {row['run']} | {row['name']} | {row['method']} | {steps} | {percent(row['alignment']['single'])}"
                     f" | {percent(row['alignment']['two'])} | {row['clip_score']:.1f} | {row['fid']['value']:.3f} | "
                     f"{ms['value']:.1f} / {ms['batch_1']:.1f} |")
    return "\n".join(lines)


def nasa_table(rows) -> str:
    header = " | ".join(f"NASA {scale}: success / kept %" for scale in NASA_SCALES)
    lines = [f"| run | model | {header} | CFG negative (teachers) | chosen scale |",
             "| --- | --- | " + " | ".join("---" for _ in NASA_SCALES) + " | --- | --- |"]
    for row in rows:
        negative = row["negative"]
        cells = [f"{percent(negative['by_nasa_scale'][s]['success'])} / {percent(negative['by_nasa_scale'][s]['kept'])}"
                 for s in NASA_SCALES]
        cfg = negative.get("cfg_negative")
        cfg_cell = f"{percent(cfg['success'])} / {percent(cfg['kept'])}" if cfg else ""
        lines.append(f"| {row['run']} | {row['name']} | {' | '.join(cells)} | {cfg_cell} | "
                     f"{negative['chosen_nasa_scale']} |")
    return "\n".join(lines)


def nasa_kinds_table(rows) -> str:
    """The issue's NASA targets per kind of pair, for the rows evaluated with them (by_kind, since run 9), at each
    NASA scale."""
    lines = ["| run | model | NASA scale | under-specified: success % | removal: success % | removal: kept % |",
             "| --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        for scale in NASA_SCALES:
            kinds = row["negative"]["by_nasa_scale"][scale].get("by_kind")
            if kinds:
                lines.append(f"| {row['run']} | {row['name']} | {scale} | "
                             f"{percent(kinds['under-specified']['success'])} | {percent(kinds['removal']['success'])}"
                             f" | {percent(kinds['removal']['kept'])} |")
    return "\n".join(lines)


def failures_table(rows) -> str:
    """Why one-object prompts fail: each image's first unmet requirement (sample.alignment's failures, judge.FAILURES
    order), for the rows evaluated with it (since run 11)."""
    lines = ["| run | model | right | " + " | ".join(ONE_OBJECT_FAILURES) + " |",
             "| --- | --- | --- | " + " | ".join("---" for _ in ONE_OBJECT_FAILURES) + " |"]
    for row in rows:
        failures = row["alignment"].get("failures")
        if failures:
            right = round(row["alignment"]["single"] * row["alignment"]["n_single"])
            cells = [str(failures["single"].get(reason, 0)) for reason in ONE_OBJECT_FAILURES]
            lines.append(f"| {row['run']} | {row['name']} | {right} | {' | '.join(cells)} |")
    return "\n".join(lines)


def fid_curves(run_dirs: dict, backbone: str) -> dict:
    """{"<run>/<name>": [(step, fid), ...]} of every distillation log of `backbone`."""
    curves = {}
    for run, run_dir in run_dirs.items():
        for path in sorted(glob.glob(os.path.join(run_dir, "progress", f"shapes-{backbone}-*.jsonl"))):
            with open(path) as f:
                records = [json.loads(line) for line in f]
            points = [(r["step"], r["fid"]) for r in records if "fid" in r]
            if points:
                curves[f"{run}/{os.path.splitext(os.path.basename(path))[0]}"] = points
    return curves


def png_plot(title: str, curves: dict) -> Image.Image:
    """A line chart of FID against step, one line per curve (COLORS in order), with axes and a legend row per curve
    below the plot (a 20-pixel stroke of the curve's color at x = MARGIN..MARGIN + 20, then its name)."""
    max_step = max(step for points in curves.values() for step, _ in points)
    max_fid = max(fid for points in curves.values() for _, fid in points) * 1.05
    width, height = PLOT_W - 2 * MARGIN, PLOT_H - 2 * MARGIN

    def xy(step, fid):
        return MARGIN + width * step / max_step, MARGIN + height * (1 - fid / max_fid)

    image = Image.new("RGB", (PLOT_W, PLOT_H + LEGEND_ROW * len(curves)), "white")
    draw = ImageDraw.Draw(image)
    draw.text((MARGIN, 12), title, fill="black")
    draw.line([(MARGIN, MARGIN), (MARGIN, MARGIN + height), (MARGIN + width, MARGIN + height)], fill="black")

    def label(x, y, text, align):  # the default bitmap font ignores anchors: align by the text's width
        draw.text((x - draw.textlength(text) * align, y), text, fill="black")

    label(MARGIN + width / 2, MARGIN + height + 22, "student step", 0.5)
    for i in range(5):
        step, fid = max_step * i / 4, max_fid * i / 4
        x, _ = xy(step, 0)
        _, y = xy(0, fid)
        label(x, MARGIN + height + 6, f"{step:.0f}", 0.5)
        label(MARGIN - 6, y - 5, f"{fid:.2f}", 1.0)
    for index, (name, points) in enumerate(curves.items()):
        color = COLORS[index % len(COLORS)]
        draw.line([xy(step, fid) for step, fid in points], fill=color, width=2, joint="curve")
        legend_y = PLOT_H + LEGEND_ROW * index
        draw.line([(MARGIN, legend_y), (MARGIN + 20, legend_y)], fill=color, width=2)
        label(MARGIN + 26, legend_y - 5, name, 0.0)
    return image


def main(argv):
    parser = argparse.ArgumentParser(description="Results tables and FID plots of train_world.sh runs.")
    parser.add_argument("runs", nargs="+", help="run folders (results/, progress/)")
    parser.add_argument("--plots", help="write fid-<backbone>.png here")
    args = parser.parse_args(argv)
    run_dirs = {os.path.basename(os.path.normpath(run)): run for run in args.runs}
    rows = [row for run in args.runs for row in load_rows(run)]
    print("### Quality and cost\n\n" + quality_table(rows, run_dirs) + "\n")
    print("### Negative prompts (NASA off = 0.0)\n\n" + nasa_table(rows) + "\n")
    print("### Negative prompts per kind (targets: under-specified success >= 95%, removal success and kept >= 80%)\n\n"
          + nasa_kinds_table(rows) + "\n")
    print("### Why one-object prompts fail (images by their first unmet requirement)\n\n" + failures_table(rows) + "\n")
    if args.plots:
        os.makedirs(args.plots, exist_ok=True)
        for backbone in ("unet-eps", "unet-v", "dit"):
            curves = fid_curves(run_dirs, backbone)
            if curves:
                path = os.path.join(args.plots, f"fid-{backbone}.png")
                png_plot(f"FID (tiny-CLIP features, n=256) during distillation, {backbone}", curves).save(path)
                print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
