import io

from attndiff import progress
from attndiff.run import Run


def test_find_last_and_done_query_the_metrics(tmp_path):
    run = Run(tmp_path)
    run.log({"tag": "sfbd-eval", "round": 0, "fid": 90.0})
    run.log({"tag": "pretrain", "step": 5})
    run.log({"tag": "sfbd-eval", "round": 1, "fid": 80.0})
    assert [r["round"] for r in run.find("sfbd-eval")] == [0, 1]
    assert run.last("sfbd-eval")["fid"] == 80.0
    assert run.done("sfbd-eval", round=1) and not run.done("sfbd-eval", round=2)
    assert run.last("pretrain", step=5) is not None and run.last("nothing") is None
    assert len(run.find(step=5)) == 1


def test_a_bar_writing_to_a_file_updates_rarely(monkeypatch):
    log = io.StringIO()  # not a terminal, like a log file under nohup
    monkeypatch.setattr("sys.stderr", log)
    bar = progress.bar(total=5000, desc="work", file=log)
    for _ in range(5000):
        bar.update(1)
    bar.close()
    assert bar.mininterval == progress.LOG_INTERVAL_S
    assert log.getvalue().count("work") <= 3  # the first draw and the last, not thousands
