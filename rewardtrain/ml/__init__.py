"""The ML core (reward models, and the policies optimised against them): plain Python, torch, transformers and TRL;
it imports no Django and no app module.

Everything here works on files and data frames, so it runs in a worker, a notebook, under `torchrun`
(`python -m rewardtrain.ml.train`) or in a benchmark alike; the Django side of `rewardtrain` (datasets,
runs, registry, views, API, tasks) calls into it, never the other way round (tests/rewardtrain/test_ml_isolation.py).

pairs (split by prompt, the pair frame, Parquet; the pairs come from labeling.ranking) ·
grouping (per-prompt batches) · encoding (texts to inputs, rewards) ·
loss · evaluate · checkpoint · device · backbones · model_sources (models from disk only) · train · scoring ·
sampling (answers from a causal LM) · sft (fine-tuning a causal LM on demonstrations, TRL) · synthetic (test data) ·
policy_opt (RLOO, GRPO and DPO with TRL, best-of-N) · policy_eval (a policy's reward, KL, predicted win rate) ·
winrate (blinded human evaluation rounds)
"""
