"""Training stages on TRL: supervised fine-tuning (`thinkflow.train.sft`) and GRPO with the mixed reward
(`thinkflow.train.grpo`). What they share: the config (`config`), the config on this machine as TRL
arguments (`settings`), the model, processor and split they read (`inputs`, on `thinkflow.models.load`),
and the run loop with the final save (`stage`). Around them: checkpoints and resume (`checkpoints`), the
lineage file (`lineage`), MLflow metrics (`callbacks`), zero-variance group filtering (`dynamic_sampling`),
launching on several GPUs or nodes (`launch`, `relaunch`, `trainjob`, `trainjob_client`), and the shipped
DeepSpeed ZeRO-2/3 configs (``deepspeed/*.json``).

Each stage is one function taking one config: ``sft.run(SFTConfig)``, ``grpo.run(GRPOStageConfig)``.
Submodules import torch/TRL lazily, so ``import thinkflow.train`` stays cheap.
"""
