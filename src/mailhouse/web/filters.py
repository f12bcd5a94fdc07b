"""Webmail filters page (issue 17 §4, first part): a raw Sieve editor and an out-of-office page.

Scripts are the store's (``store/sieve.py``, the same ones ManageSieve edits, RFC 5804 semantics
and the ``[sieve] max_scripts``/``max_script_size`` quotas).

Invariants:
- A script is stored only when ``mailhouse.sieve.compile_script`` accepts it (as PUTSCRIPT,
  RFC 5804 §2.6); otherwise the page shows the error at its line ("line 3, column 5: ...") and
  nothing is written.
- The out-of-office form generates a readable script named ``vacation`` (RFC 5230; RFC 5260
  ``currentdate`` with RFC 5231 ``:value`` when dates are set); every user string goes through
  :func:`quoted` (RFC 5228 §2.4.2: ``\\`` and ``"`` escaped), so the text cannot break out.
- Turning it on activates that script; if another script is active the page says so and changes
  nothing unless the user ticks "replace" (at most one active script, RFC 5804 §2.8).
- The form's values are kept as the user setting ``vacation`` (JSON) to show them again.
- Every POST passes the settings forms' Origin and CSRF checks (``checked_form``).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from mailhouse.delivery.sieve import sieve_limits
from mailhouse.proto.managesieve import valid_script_name
from mailhouse.sieve import SieveError, compile_script
from mailhouse.store.api import Account, SieveProblem, SieveScriptError
from mailhouse.web.common import checked_form, folder_tree, redirect, render, require_user, state

VACATION = "vacation"  # the generated script's name, and the user setting holding the form
HEADER = "# Out-of-office reply, written by the webmail's filters page."  # marks a generated script
MAX_SUBJECT = 200  # characters of the reply's subject
MAX_TEXT = 8000  # characters of the reply's text

MESSAGES = {
    "saved": "Script saved.",
    "activated": "Script activated.",
    "deactivated": "No script is active now.",
    "deleted": "Script deleted.",
    "vacation": "Out-of-office settings saved.",
}

PROBLEMS = {  # the store's refusals (RFC 5804 §1.3 codes), as the page says them
    SieveProblem.NONEXISTENT: "There is no script “{}”.",
    SieveProblem.ACTIVE: "“{}” is the active script: deactivate it first.",
    SieveProblem.ALREADYEXISTS: "A script “{}” exists already.",
    SieveProblem.MAXSCRIPTS: "You have the most scripts allowed; delete one to add “{}”.",
    SieveProblem.MAXSIZE: "“{}” is larger than scripts may be.",
}

Field = Callable[[str], str]  # a POSTed text field by name ("" when absent)


def _fields(form: FormData) -> Field:
    """The POSTed text fields by name; a file or an absent field reads as ""."""

    def f(key: str) -> str:
        v = form.get(key, "")
        return v if isinstance(v, str) else ""

    return f


def _problem(e: SieveScriptError) -> str:
    return PROBLEMS[e.problem].format(e.name)


@dataclass(frozen=True, slots=True)
class VacationForm:
    """What the out-of-office form holds: FIRST/LAST are ISO dates ("" for none)."""

    on: bool = False
    subject: str = ""
    text: str = ""
    first: str = ""
    last: str = ""


def quoted(value: str) -> str:
    """VALUE as a Sieve quoted string (RFC 5228 §2.4.2: backslash and double quote escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def vacation_script(v: VacationForm) -> str:
    """The readable Sieve script for V (RFC 5230 vacation; RFC 5260 dates, RFC 5231 "ge"/"le")."""
    dated = bool(v.first or v.last)
    lines = [HEADER, ""]
    lines.append('require ["vacation", "date", "relational"];' if dated else 'require "vacation";')
    lines.append("")
    action = (
        f"vacation :subject {quoted(v.subject)} {quoted(v.text)};"
        if v.subject
        else (f"vacation {quoted(v.text)};")
    )
    tests = []
    if v.first:  # RFC 5260 §5: currentdate, compared on the "date" part (yyyy-mm-dd)
        tests.append(f'currentdate :value "ge" "date" {quoted(v.first)}')
    if v.last:
        tests.append(f'currentdate :value "le" "date" {quoted(v.last)}')
    if not tests:
        lines.append(action)
    else:
        cond = tests[0] if len(tests) == 1 else "allof (" + ",\n          ".join(tests) + ")"
        lines += [f"if {cond} {{", f"    {action}", "}"]
    return "\n".join(lines) + "\n"


def _date(value: str, label: str) -> str:
    value = value.strip()
    if not value:
        return ""
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise FormError(f"{label}: not a date (yyyy-mm-dd).") from None


class FormError(Exception):
    """A form value was refused; the message is shown on the page (400)."""


def _stored_vacation(settings: dict[str, str]) -> VacationForm:
    try:
        data = json.loads(settings.get(VACATION, "{}"))
        return VacationForm(**{k: data[k] for k in VacationForm.__slots__ if k in data})
    except (ValueError, TypeError):
        return VacationForm()


async def _page(
    request: Request,
    user: Account,
    *,
    name: str = "",
    content: str | None = None,
    vacation: VacationForm | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    st = state(request)
    store = st.svc.store
    scripts = await store.sieve_scripts(user.id)
    active = next((s.name for s in scripts if s.active), None)
    if content is None:
        name = name or request.query_params.get("script", "")
        content = ""
        if name and any(s.name == name for s in scripts):
            content = await store.get_sieve_script(user.id, name)
    own_vacation = any(s.name == VACATION for s in scripts) and not (
        await store.get_sieve_script(user.id, VACATION)
    ).startswith(HEADER)
    return render(
        request,
        "filters.html",
        status=status,
        folders=await folder_tree(st.svc, user),
        current=None,
        scripts=scripts,
        active=active,
        name=name,
        content=content,
        own_vacation=own_vacation,
        v=vacation or _stored_vacation(await store.user_settings(user.id)),
        error=error,
        notice=MESSAGES.get(request.query_params.get("done", "")),
    )


async def filters_page(request: Request) -> Response:
    user = await require_user(request)
    request.state.user = user
    return await _page(request, user)


async def filters_post(request: Request) -> Response:
    user = await require_user(request)
    request.state.user = user
    f = _fields(await checked_form(request))
    st = state(request)
    store = st.svc.store
    cfg = st.svc.cfg.sieve
    action = f("action")
    name = f("name").strip()
    try:
        if action == "save":
            content = f("content").replace("\r\n", "\n")
            if not valid_script_name(name):  # RFC 5804 §1.6
                return await _page(
                    request, user, name=name, content=content, error="Invalid script name.", status=400
                )
            try:  # RFC 5804 §2.6: only a script that compiles is stored
                compile_script(content, name=name, limits=sieve_limits(cfg))
            except SieveError as e:
                return await _page(request, user, name=name, content=content, error=str(e), status=400)
            await store.put_sieve_script(
                user.id, name, content, cfg.max_scripts, cfg.max_script_size, time.time()
            )
            return redirect(f"/filters?done=saved&script={quote(name)}")
        if action == "activate":
            await store.set_active_sieve_script(user.id, name)
            return redirect("/filters?done=activated")
        if action == "deactivate":
            await store.set_active_sieve_script(user.id, None)
            return redirect("/filters?done=deactivated")
        if action == "delete":
            await store.delete_sieve_script(user.id, name)
            return redirect("/filters?done=deleted")
        if action == "vacation":
            return await _vacation(request, user, f)
    except SieveScriptError as e:
        return await _page(request, user, error=_problem(e), status=400)
    raise HTTPException(400, "unknown action")


async def _vacation(request: Request, user: Account, f: Field) -> Response:
    st = state(request)
    store = st.svc.store
    cfg = st.svc.cfg.sieve
    v = VacationForm(
        on=f("on") == "1",
        subject=" ".join(f("subject").split())[:MAX_SUBJECT],
        text=f("text").replace("\r\n", "\n").replace("\0", " ")[:MAX_TEXT],
        first=f("first").strip(),
        last=f("last").strip(),
    )
    try:
        v = VacationForm(v.on, v.subject, v.text, _date(v.first, "First day"), _date(v.last, "Last day"))
        if v.first and v.last and v.last < v.first:
            raise FormError("The last day is before the first day.")
        if v.on and not v.text.strip():
            raise FormError("Write the text of the reply.")
    except FormError as e:
        return await _page(request, user, vacation=v, error=str(e), status=400)
    active = await store.active_sieve_script(user.id)
    other = active[0] if active is not None and active[0] != VACATION else None
    if v.on and other is not None and f("replace") != "1":  # never replace the user's script silently
        return await _page(
            request,
            user,
            vacation=v,
            error=f"Your script “{other}” is active; turning the out-of-office reply on would stop it. "
            "Tick “replace it” to do so anyway, or add a vacation rule to that script.",
            status=409,
        )
    mine = [s.name for s in await store.sieve_scripts(user.id)]
    if VACATION in mine and f("replace") != "1":  # a "vacation" script the user wrote: not silently
        if not (await store.get_sieve_script(user.id, VACATION)).startswith(HEADER):
            return await _page(
                request,
                user,
                vacation=v,
                error=f"You wrote a script named “{VACATION}” yourself; saving here would replace it. "
                "Tick “replace it” to do so anyway, or rename that script first.",
                status=409,
            )
    script = vacation_script(v)
    compile_script(script, name=VACATION, limits=sieve_limits(cfg))  # ours: always compiles
    await store.put_sieve_script(user.id, VACATION, script, cfg.max_scripts, cfg.max_script_size, time.time())
    if v.on:
        await store.set_active_sieve_script(user.id, VACATION)
    elif active is not None and active[0] == VACATION:
        await store.set_active_sieve_script(user.id, None)
    await store.set_user_setting(user.id, VACATION, json.dumps(asdict(v)))
    return redirect("/filters?done=vacation")
