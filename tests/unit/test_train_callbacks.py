"""MLflowMetricsCallback: metrics are handed to MLflow's asynchronous logging and all of them, the last step's
included, are in the run when training ends (nothing lost in the queue or the buffer)."""

from __future__ import annotations

from types import SimpleNamespace

from thinkflow.train.callbacks import MLflowMetricsCallback


def _state(step: int) -> SimpleNamespace:
    return SimpleNamespace(global_step=step, is_world_process_zero=True, num_input_tokens_seen=100 * step)


def test_every_step_is_in_the_run_after_train_end(mlflow_db: str) -> None:
    from mlflow import MlflowClient

    client = MlflowClient()
    run_id = client.create_run(client.get_experiment_by_name("train-tests").experiment_id).info.run_id
    callback = MLflowMetricsCallback(run_id, flush_every_s=3600.0)  # nothing sent before the end of training
    args, control = SimpleNamespace(), SimpleNamespace()
    callback.on_train_begin(args, _state(0), control)  # type: ignore[arg-type]
    for step in range(1, 6):
        callback.on_log(args, _state(step), control, logs={"loss": 1.0 / step, "note": "text"})  # type: ignore[arg-type]
    assert client.get_metric_history(run_id, "loss") == []  # buffered: the steps did not wait on the store
    callback.on_log(args, _state(5), control, logs={"train_loss": 0.5})  # type: ignore[arg-type]  # the summary log
    callback.on_train_end(args, _state(5), control)  # type: ignore[arg-type]
    history = sorted(client.get_metric_history(run_id, "loss"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in history] == [(s, 1.0 / s) for s in range(1, 6)]
    assert [m.step for m in client.get_metric_history(run_id, "step_seconds")][-1] == 5
    assert client.get_run(run_id).data.metrics["train_loss"] == 0.5
    assert callback.last["loss"] == 0.2
