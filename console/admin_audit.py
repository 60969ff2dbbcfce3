"""Audit for edits made in the Django admin (/django-admin/).

The console's own editors write audit entries through their services; the Django
admin saves models directly, so every ModelAdmin that may change a policy or a
role mixes in :class:`AuditedAdmin`: each add, change and delete (the bulk
"delete selected" action included) appends ``<audit_name>.created`` /
``.updated`` / ``.deleted`` with the row's fields before and after, in the
admin's own transaction.
"""

from django.db import transaction

from console import audit


def model_state(obj, exclude=()) -> dict:
    """The row's editable fields as JSON-able values; many-to-many as sorted names."""
    state = {}
    opts = obj._meta
    for field in opts.concrete_fields:
        if field.name in exclude or field.primary_key:
            continue
        state[field.name] = field.value_from_object(obj)
    if obj.pk is not None:
        for field in opts.many_to_many:
            if field.name not in exclude:
                state[field.name] = sorted(str(related) for related in getattr(obj, field.name).all())
    return state


class AuditedAdmin:
    """Mix into a ModelAdmin (before it): its writes are audited. ``audit_name`` names the entries."""

    audit_name = ""
    audit_exclude: tuple[str, ...] = ()

    def _audit_name(self) -> str:
        return self.audit_name or self.model._meta.model_name

    def _state(self, obj) -> dict:
        return model_state(obj, self.audit_exclude)

    def save_model(self, request, obj, form, change):
        before = None
        if change and obj.pk is not None:
            old = type(obj)._default_manager.filter(pk=obj.pk).first()
            before = self._state(old) if old is not None else None
        request._audit_before = before
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)  # many-to-many (a user's groups) saved here
        obj = form.instance
        before = getattr(request, "_audit_before", None)
        after = self._state(obj)
        if before == after:
            return
        action = "updated" if before is not None else "created"
        audit.record(actor=request.user, action=f"{self._audit_name()}.{action}", target=obj,
                     before=before, after=after)

    def delete_model(self, request, obj):
        with transaction.atomic():
            audit.record(actor=request.user, action=f"{self._audit_name()}.deleted", target=obj,
                         before=self._state(obj))
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for obj in queryset:
                audit.record(actor=request.user, action=f"{self._audit_name()}.deleted", target=obj,
                             before=self._state(obj))
            super().delete_queryset(request, queryset)
