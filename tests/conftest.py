"""Shared fixtures: users in each role, a queue with prompts and answers."""
import os

import pytest
from django.contrib.auth.models import Group, User

from labeling.assignment import sync_tasks
from labeling.models import Answer, Prompt, Queue

# Playwright's sync API runs an event loop in the test thread; Django's ORM refuses to run
# beside one unless told it is safe (the test thread is not serving requests).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def make_user(username: str, *roles: str) -> User:
    user = User.objects.create_user(username=username, password="pw-" + username)
    for role in roles:
        # get_or_create: a transactional test's flush removes the groups the migration made.
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


@pytest.fixture
def labeler(db):
    return make_user("lab1", "labeler")


@pytest.fixture
def labeler2(db):
    return make_user("lab2", "labeler")


@pytest.fixture
def queue_admin(db):
    return make_user("boss", "admin")


@pytest.fixture
def ml_user(db):
    return make_user("mlstaff", "ml")


def make_queue(name="Q", *, prompts=3, answers=4, **fields) -> Queue:
    queue = Queue.objects.create(name=name, **fields)
    for i in range(prompts):
        prompt = Prompt.objects.create(queue=queue, text=f"Prompt {i}", content_hash=f"{name}-{i}")
        Answer.objects.bulk_create(
            Answer(prompt=prompt, position=j, text=f"Answer {j} to prompt {i}", model="m") for j in range(answers)
        )
    sync_tasks(queue)
    return queue


@pytest.fixture
def ranking_queue(db):
    return make_queue("Rank", prompts=3, answers=4, task_kind=Queue.Kinds.RANKING, ranking_overlap=2)
