"""Creating prompts and their immutable versions."""

import json
import string

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from agents.models import Feedback, Prompt, PromptKind, PromptVersion
from console import audit


class PromptNameTaken(Exception):
    def __init__(self, name: str):
        super().__init__(f"A prompt named {name!r} already exists.")
        self.name = name


class InvalidTemplate(ValueError):
    """The template does not parse, or uses variables it does not declare."""


def template_variables(kind: str, template: str) -> list[str]:
    """The ``{names}`` a template uses, in order of first use. Raises InvalidTemplate."""
    texts = [template]
    if kind == PromptKind.CHAT:
        try:
            messages = json.loads(template)
        except ValueError as exc:
            raise InvalidTemplate(f"Chat messages must be JSON: {exc}") from exc
        if not isinstance(messages, list) or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in messages):
            raise InvalidTemplate('Chat messages must be a JSON list of {"role": ..., "content": ...} objects.')
        texts = [m["content"] for m in messages]
    names = []
    for text in texts:
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise InvalidTemplate(f"Template braces do not parse ({exc}); write {{{{ and }}}} for literal braces.") \
                from exc
        for _literal, field, _spec, _conv in parsed:
            if field is None:
                continue
            name = field.split(".")[0].split("[")[0]
            if not name.isidentifier():
                raise InvalidTemplate(f"{{{field}}} is not a variable name.")
            if name not in names:
                names.append(name)
    return names


def _checked_variables(kind: str, template: str, variables: list[str] | None) -> list[str]:
    used = template_variables(kind, template)
    if variables is None:
        return used
    undeclared = [v for v in used if v not in variables]
    if undeclared:
        raise InvalidTemplate("The template uses undeclared variables: " + ", ".join(undeclared))
    return list(dict.fromkeys(variables))


def create_prompt(*, name: str, actor, description: str = "", template: str = "", kind: str = PromptKind.TEXT,
                  variables: list[str] | None = None, model: str = "", parameters: dict | None = None,
                  commit_message: str = "first version", owners=()) -> Prompt:
    """Create a prompt and (when ``template`` is given) its version 1; audited.

    Raises PromptNameTaken or InvalidTemplate; nothing is written then.
    """
    try:
        with transaction.atomic():
            prompt = Prompt.objects.create(name=name, description=description)
            if owners:
                prompt.owners.set(owners)
            audit.record(actor=actor, action="prompt.created", target=prompt,
                         after={"name": name, "description": description})
            if template:
                create_version(prompt=prompt, author=actor, template=template, kind=kind, variables=variables,
                               model=model, parameters=parameters, commit_message=commit_message)
    except IntegrityError as exc:
        raise PromptNameTaken(name) from exc
    return prompt


def create_version(*, prompt: Prompt, author, template: str, kind: str = PromptKind.TEXT,
                   variables: list[str] | None = None, model: str = "", parameters: dict | None = None,
                   commit_message: str = "", parent: PromptVersion | None = None,
                   answers_feedback_ids=()) -> PromptVersion:
    """Append the next numbered version (never edits one); links the feedback it answers. Audited.

    Numbers are allocated under a row lock on the prompt, so concurrent saves get distinct numbers.
    """
    variables = _checked_variables(kind, template, variables)
    if parameters is not None and not isinstance(parameters, dict):
        raise InvalidTemplate("Parameters must be a JSON object.")
    if parent is not None and parent.prompt_id != prompt.pk:
        raise InvalidTemplate("The parent version belongs to another prompt.")
    user = author if getattr(author, "is_authenticated", False) else None
    with transaction.atomic():
        Prompt.objects.select_for_update().filter(pk=prompt.pk).first()
        number = (PromptVersion.objects.filter(prompt=prompt).aggregate(m=Max("number"))["m"] or 0) + 1
        version = PromptVersion.objects.create(
            prompt=prompt, number=number, kind=kind, template=template, variables=variables, model=model,
            parameters=parameters or {}, author=user, commit_message=commit_message[:500], parent=parent,
        )
        linked = 0
        if answers_feedback_ids:
            linked = Feedback.objects.filter(pk__in=list(answers_feedback_ids), version__prompt=prompt,
                                             addressed_by__isnull=True).update(addressed_by=version)
        audit.record(actor=author, action="prompt.version_created", target=version,
                     after={"prompt": prompt.name, "number": number, "parent": parent.number if parent else None,
                            "commit_message": commit_message, "answers_feedback": linked,
                            "at": timezone.now()})
    return version


def get_version(prompt: Prompt, number) -> PromptVersion | None:
    try:
        number = int(str(number).strip().lstrip("v"))
    except (TypeError, ValueError):
        return None
    return PromptVersion.objects.filter(prompt=prompt, number=number).select_related("prompt").first()
