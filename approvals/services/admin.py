"""Admin edits the other service modules do not cover: creating queues. Audited."""

from django.db import transaction

from approvals.models import Queue
from console import audit


def create_queue(*, name: str, description: str = "", actor) -> Queue:
    """Create a queue (no members yet). Raises ValidationError naming the field; audited."""
    queue = Queue(name=name, description=description)
    queue.full_clean()  # slug shape and uniqueness
    with transaction.atomic():
        queue.save()
        audit.record(actor=actor, action="queue.created", target=queue,
                     after={"name": queue.name, "description": queue.description})
    return queue


def update_queue(*, queue_id: int, description: str, actor) -> Queue:
    """Change a queue's description; audited with before/after."""
    with transaction.atomic():
        queue = Queue.objects.select_for_update(no_key=True).get(pk=queue_id)  # no_key: see set_conflict_rule
        before = {"description": queue.description}
        queue.description = description
        queue.full_clean()
        queue.save(update_fields=["description"])
        audit.record(actor=actor, action="queue.updated", target=queue, before=before,
                     after={"description": description})
    return queue

