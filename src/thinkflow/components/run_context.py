"""The first and the last task of every pipeline: open and close the MLflow parent run of the KFP run."""

from typing import Optional

from kfp import dsl

from thinkflow.components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def open_run(
    pipeline: str,
    experiment: str = "thinkflow",
    model: str = "",
    data_preset: str = "",
    data_overrides: Optional[dict] = None,
    sft_preset: str = "",
    sft_overrides: Optional[dict] = None,
    grpo_preset: str = "",
    grpo_overrides: Optional[dict] = None,
    eval_preset: str = "",
    eval_overrides: Optional[dict] = None,
    model_name: str = "",
    recipes: Optional[list] = None,
    kfp_run_id: str = dsl.PIPELINE_JOB_ID_PLACEHOLDER,
    kfp_run_name: str = dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
    workspace: str = dsl.WORKSPACE_PATH_PLACEHOLDER,
) -> str:
    """Create the MLflow parent run every task of this pipeline run nests under (pipeline parameters as
    its params); fail early on an unknown recipe. Returns the run id."""
    from thinkflow.tracking import open_parent_run
    from thinkflow.train.recipes import check_recipes

    params = {
        "model": model,
        "data_preset": data_preset,
        "data_overrides": data_overrides,
        "sft_preset": sft_preset,
        "sft_overrides": sft_overrides,
        "grpo_preset": grpo_preset,
        "grpo_overrides": grpo_overrides,
        "eval_preset": eval_preset,
        "eval_overrides": eval_overrides,
        "model_name": model_name,
        "recipes": recipes,
    }
    check_recipes(recipes)
    return open_parent_run(
        pipeline,
        {k: v for k, v in params.items() if v not in (None, "", {})},
        experiment=experiment,
        kfp_run_id=kfp_run_id,
        kfp_run_name=kfp_run_name,
        workspace=workspace,
    )


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def close_run(status: dsl.PipelineTaskFinalStatus, workspace: str = dsl.WORKSPACE_PATH_PLACEHOLDER):
    """Exit handler: end the parent run as FINISHED or FAILED, with the failing task's error as a tag."""
    from thinkflow.tracking import close_parent_run

    close_parent_run(status.state, status.error_message or "", workspace=workspace)
