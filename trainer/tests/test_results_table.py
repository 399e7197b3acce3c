"""trainer.results_table on the committed results of the two GPU runs (docs/results/run1, run2)."""
import json
import os
import re
import shutil

from PIL import Image, ImageColor

from trainer import results_table

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNS = [os.path.join(REPO, "docs", "results", run) for run in ("run1", "run2")]


def test_tables_have_one_row_per_evaluated_model_with_its_numbers(tmp_path, capsys):
    assert results_table.main(RUNS + ["--plots", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    out, failures = out.split("### Why one-object prompts fail")
    quality, negative, kinds = out.split("### Negative prompts")
    assert kinds.count("\n| run") == 1  # the per-kind table: no row, runs 1 and 2 were evaluated before by_kind
    assert failures.count("\n| run") == 1  # nor before failures
    for run in RUNS:
        for name in os.listdir(os.path.join(run, "results")):
            if name.startswith("align-"):
                continue
            row = json.load(open(os.path.join(run, "results", name)))
            model = name[:-len(".json")]
            line = next(line for line in quality.splitlines() if line.startswith(f"| {os.path.basename(run)} | {model} |"))
            assert f"| {row['fid']['value']:.3f} |" in line and f"| {row['clip_score']:.1f} |" in line
            assert f"| {os.path.basename(run)} | {model} |" in negative
    # the default student's row: run 2, 1,031 steps, FID 0.049
    assert re.search(r"\| run2 \| shapes-unet-v-pgsb \| pg-sb \| 1031 \| 6\.0 \| 0\.0 \| 38\.8 \| 0\.049 \|", quality)


def test_a_teacher_init_row_is_a_student_at_step_0_and_a_kept_student_shows_its_own_step(tmp_path, capsys):
    (tmp_path / "results").mkdir()
    shutil.copytree(os.path.join(RUNS[1], "progress"), tmp_path / "progress")  # its last step: 1031
    row = json.load(open(os.path.join(RUNS[1], "results", "shapes-unet-v-pgsb.json")))
    (tmp_path / "results" / "unet-v-init.json").write_text(json.dumps(dict(row, method="teacher-init")))
    (tmp_path / "results" / "shapes-unet-v-pgsb.json").write_text(json.dumps(dict(row, steps=800)))
    assert results_table.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"| {tmp_path.name} | unet-v-init | teacher-init | 0 | 6.0 |" in out
    assert f"| {tmp_path.name} | shapes-unet-v-pgsb | pg-sb | 800 | 6.0 |" in out


def test_fid_plots_draw_one_line_per_distillation_run(tmp_path):
    plots = tmp_path / "plots"  # created by the command
    results_table.main(RUNS + ["--plots", str(plots)])
    expected = {"unet-eps": 6, "unet-v": 4, "dit": 2}  # run 1: sb, pg-sb (+2 ablations on unet-eps); run 2: unet-*
    for backbone, lines in expected.items():
        image = Image.open(plots / f"fid-{backbone}.png").convert("RGB")
        assert image.size == (results_table.PLOT_W, results_table.PLOT_H + results_table.LEGEND_ROW * lines)
        margin = results_table.MARGIN
        plotted = set(image.crop((margin, margin, image.size[0] - margin, results_table.PLOT_H - margin)).getdata())
        for index in range(lines):  # each curve's legend stroke, and the curve itself, in its own color
            color = ImageColor.getrgb(results_table.COLORS[index])
            legend = (results_table.MARGIN + 10, results_table.PLOT_H + results_table.LEGEND_ROW * index)
            assert image.getpixel(legend) == color and color in plotted
        assert ImageColor.getrgb(results_table.COLORS[lines]) not in plotted


def test_the_per_kind_table_shows_each_scales_rates_against_the_targets(tmp_path, capsys):
    (tmp_path / "results").mkdir()
    row = json.load(open(os.path.join(RUNS[1], "results", "shapes-unet-v-pgsb.json")))
    kinds = {"under-specified": {"success": 0.95, "kept": 0.5, "n": 180},
             "removal": {"success": 0.8, "kept": 0.625, "n": 180}}
    for rates in row["negative"]["by_nasa_scale"].values():
        rates["by_kind"] = kinds
    (tmp_path / "results" / "student.json").write_text(json.dumps(row))
    assert results_table.main([str(tmp_path)]) == 0
    table = capsys.readouterr().out.split("### Negative prompts per kind")[1]
    for scale in results_table.NASA_SCALES:
        assert f"| {tmp_path.name} | student | {scale} | 95.0 | 80.0 | 62.5 |" in table


def test_the_failures_table_counts_one_object_failures_by_reason(tmp_path, capsys):
    (tmp_path / "results").mkdir()
    row = json.load(open(os.path.join(RUNS[1], "results", "shapes-unet-v-pgsb.json")))  # one-object alignment 6%
    row["alignment"]["failures"] = {"single": {"extra object": 80, "color": 14}, "two": {"binding": 100}}
    (tmp_path / "results" / "student.json").write_text(json.dumps(row))
    assert results_table.main([str(tmp_path)]) == 0
    table = capsys.readouterr().out.split("### Why one-object prompts fail")[1]
    assert "| right | background | empty | extra object | unknown shape | color | size | shape |" in table
    assert f"| {tmp_path.name} | student | 6 | 0 | 0 | 80 | 0 | 14 | 0 | 0 |" in table
