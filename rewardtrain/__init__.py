"""Reward models: the Django side of pair datasets, training runs, the model registry and answer generation,
around the ML core in `ml/`.

The Django side: pair datasets built from the rankings in the database (`datasets`); training runs asked
for, run in the worker, resumed and cancelled (`runs`); the reward-model registry, with a finished run's
model, the active model and scoring (`registry`); answer generation jobs, which sample answers to a queue's
prompts for labelers to rank (`generation`, with its pages in `generation_views` and the demo's answers in
`manage.py sample_demo_answers`); the forms and pages for ML staff (`forms`, `views`), the REST API (`api`)
and the Celery tasks (`tasks`). `ml/` does the work on files and data frames
(pairs, training, evaluation, scoring, answer sampling) and imports no Django and no app module.
"""
