"""DeploymentPanel: deploy a job's checkpoint, watch its spend against the budget, chat with it, stop it.

Thin over the backend (the same core as ``/api/inference/*`` and ``/v1``): the panel only
gathers the deploy body, renders the status (a spend-versus-budget gauge, the alerts, request
metrics) and a chat playground that shows each reply's tokens and latency.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import ipywidgets as W

from ..serving.providers.runpod import DEFAULT_GPU, GPU_PRICES
from .common import esc, guarded, inline_error_html, ok_html

STYLE = """<style>
.wb-deploy-panel .wb-gauge{width:420px;height:14px;background:#eee;border-radius:7px;overflow:hidden}
.wb-deploy-panel .wb-gauge>div{height:100%}
.wb-deploy-panel .wb-alert{color:#8a5300;font-size:12px}
.wb-deploy-panel .wb-chat-turn{margin:4px 0;padding:4px 8px;border-radius:6px;max-width:640px}
.wb-deploy-panel .wb-chat-user{background:#e8f0fe}
.wb-deploy-panel .wb-chat-bot{background:#f1f3f4}
.wb-deploy-panel .wb-chat-meta{color:#666;font-size:11px}
.wb-deploy-panel .wb-error-text{color:#b00020}
</style>"""
POLL_S = 2.0


def gauge_html(status: dict[str, Any]) -> str:
    """Spend against the budget as a bar (green, amber past 80 %, red at 100 %), and the alerts fired."""
    limit, spend = status.get("budget_limit"), status.get("current_spend") or 0.0
    pct = status.get("budget_utilization_percent")
    if limit:
        color = "#c62828" if (pct or 0) >= 100 else "#f9a825" if (pct or 0) >= 80 else "#2e7d32"
        bar = (f"<div class='wb-gauge' title='{pct}%'><div style='width:{min(100.0, pct or 0):.1f}%;"
               f"background:{color}'></div></div><div><b>${spend:.4f}</b> of ${limit:.2f} "
               f"({pct}%) · {status.get('request_count', 0)} requests · "
               f"{status.get('estimated_requests_remaining')} left</div>")
    else:
        bar = f"<div><b>${spend:.4f}</b> spent · {status.get('request_count', 0)} requests · no budget</div>"
    alerts = "".join(f"<div class='wb-alert'>⚠ {esc(a.get('message') or a['kind'])} ({esc(a['at'])})</div>"
                     for a in status.get("alerts") or [])
    m = status.get("metrics") or {}
    head = (f"<div><b>{esc(status['model_name'])}</b> — <span class='wb-deploy-state'>{esc(status['status'])}"
            f"</span> · {esc(status['provider'])} · {esc(status['checkpoint'])}</div>")
    metrics = (f"<div style='font-size:12px'>ok {m.get('successful_requests', 0)} · failed "
               f"{m.get('failed_requests', 0)} · avg {m.get('avg_latency_ms')} ms · p95 {m.get('p95_latency_ms')} ms"
               f" · TTFT p95 {m.get('p95_ttft_ms')} ms · {m.get('requests_per_minute', 0)}/min</div>")
    url = status.get("endpoint_url")
    where = f"<div style='font-size:12px'>base_url <code>{esc(url)}</code></div>" if url else ""
    return head + bar + alerts + metrics + where


class DeploymentPanel:
    """``DeploymentPanel(backend)`` — ``.widget`` is the panel's root ``VBox``."""

    def __init__(self, backend: Any = None, *, poll: bool = True):
        if backend is None:
            from .backend import default_backend

            backend = default_backend()
        self.backend = backend
        self.status: dict[str, Any] | None = None
        self.history: list[dict[str, str]] = []
        self._poll = poll
        self._stop_polling = threading.Event()
        self._poller: threading.Thread | None = None

        def css(widget: Any, cls: str) -> Any:
            widget.add_class(cls)
            return widget

        self.job = css(W.Dropdown(description="Job", options=[], layout={"width": "420px"}), "wb-deploy-job")
        self.checkpoint = css(W.Dropdown(description="Checkpoint", options=["best", "final"], value="best"),
                              "wb-deploy-checkpoint")
        self.name = css(W.Text(description="Name", placeholder="e.g. support-bot"), "wb-deploy-name")
        self.provider = css(W.ToggleButtons(options=["local", "runpod-serverless"], value="local",
                                            description="Provider"), "wb-deploy-provider")
        self.gpu = css(W.Dropdown(description="GPU", options=list(GPU_PRICES), value=DEFAULT_GPU), "wb-deploy-gpu")
        self.min_workers = css(W.BoundedIntText(0, min=0, max=100, description="Min workers"), "wb-deploy-min")
        self.max_workers = css(W.BoundedIntText(3, min=1, max=100, description="Max workers"), "wb-deploy-max")
        self.budget = css(W.BoundedFloatText(10.0, min=0, max=1_000_000, step=1, description="Budget $"),
                          "wb-deploy-budget")
        self.cost = css(W.BoundedFloatText(0.0, min=0, max=100, step=0.01, description="$/request"),
                        "wb-deploy-cost")
        self.auto_stop = css(W.Checkbox(True, description="Stop at the budget"), "wb-deploy-autostop")
        self.runpod_key = css(W.Password(description="RunPod key", placeholder="RUNPOD_API_KEY"), "wb-deploy-key")
        self.save_key = css(W.Button(description="Save key", icon="key"), "wb-deploy-save-key")
        self.deploy_button = css(W.Button(description="Deploy", button_style="primary", icon="rocket"),
                                 "wb-deploy-button")
        self.message = css(W.HTML(""), "wb-deploy-message")

        self.deployment = css(W.Dropdown(description="Deployment", options=[], layout={"width": "420px"}),
                              "wb-deploy-select")
        self.refresh_button = css(W.Button(description="Refresh", icon="refresh"), "wb-deploy-refresh")
        self.stop_button = css(W.Button(description="Stop", button_style="danger", icon="stop"), "wb-deploy-stop")
        self.status_html = css(W.HTML(""), "wb-deploy-status")

        self.prompt = css(W.Textarea(placeholder="Say something to the model…", layout={"width": "520px"}),
                          "wb-chat-prompt")
        self.max_tokens = css(W.BoundedIntText(128, min=1, max=8192, description="Max tokens"), "wb-chat-max")
        self.temperature = css(W.BoundedFloatText(0.7, min=0, max=2, step=0.1, description="Temperature"),
                               "wb-chat-temp")
        self.send = css(W.Button(description="Send", button_style="success", icon="paper-plane"), "wb-chat-send")
        self.clear = css(W.Button(description="New chat"), "wb-chat-clear")
        self.transcript = css(W.HTML(""), "wb-chat-transcript")
        self.chat_error = css(W.HTML(""), "wb-chat-error")
        # feedback on the last reply: thumbs (success or failure) and stars (a 1-5 rating), into the analytics
        self.last_reply_id: str | None = None
        self._thumb: bool | None = None
        self.thumb_up = css(W.Button(description="", icon="thumbs-up", tooltip="a good reply",
                                     layout={"width": "40px"}, disabled=True), "wb-chat-up")
        self.thumb_down = css(W.Button(description="", icon="thumbs-down", tooltip="a bad reply",
                                       layout={"width": "40px"}, disabled=True), "wb-chat-down")
        self.stars = css(W.ToggleButtons(options=[("★" * i, i) for i in range(1, 6)], value=None,
                                         style={"button_width": "64px"}, disabled=True), "wb-chat-stars")
        self.feedback_comment = css(W.Text(placeholder="comment (optional)", layout={"width": "260px"},
                                           disabled=True), "wb-chat-comment")
        self.feedback_msg = css(W.HTML(""), "wb-chat-feedback")

        self.job.observe(lambda _c: self._load_checkpoints(), names="value")
        self.provider.observe(lambda _c: self._show_provider(), names="value")
        self.deployment.observe(lambda _c: self.show_status(), names="value")
        self.deploy_button.on_click(lambda _b: self.deploy())
        self.save_key.on_click(lambda _b: self.save_runpod_key())
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.stop_button.on_click(lambda _b: self.stop())
        self.send.on_click(lambda _b: self.send_message())
        self.clear.on_click(lambda _b: self._clear_chat())
        self.thumb_up.on_click(lambda _b: self.rate(success=True))
        self.thumb_down.on_click(lambda _b: self.rate(success=False))
        self.stars.observe(lambda c: c["new"] and self.rate(rating=int(c["new"])), names="value")

        self.runpod_box = W.VBox([W.HBox([self.gpu, self.min_workers, self.max_workers]),
                                  W.HBox([self.runpod_key, self.save_key])])
        self.local_box = W.HBox([self.cost])
        form = W.VBox([W.HTML("<h4 style='margin:2px 0'>Deploy a checkpoint</h4>"),
                       W.HBox([self.job, self.checkpoint]), self.name, self.provider, self.local_box,
                       self.runpod_box, W.HBox([self.budget, self.auto_stop]), self.deploy_button, self.message])
        live = W.VBox([W.HTML("<h4 style='margin:8px 0 2px'>Deployments</h4>"),
                       W.HBox([self.deployment, self.refresh_button, self.stop_button]), self.status_html])
        chat = W.VBox([W.HTML("<h4 style='margin:8px 0 2px'>Playground</h4>"), self.transcript, self.prompt,
                       W.HBox([self.max_tokens, self.temperature, self.send, self.clear]), self.chat_error,
                       W.HBox([W.HTML("Rate the last reply:&nbsp;"), self.thumb_up, self.thumb_down, self.stars,
                               self.feedback_comment]), self.feedback_msg])
        self.widget = css(W.VBox([W.HTML(STYLE), form, live, chat]), "wb-deploy-panel")
        self._show_provider()
        self.refresh()

    # ---- lists -------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Jobs with checkpoints, and the deployments (newest first, live ones on top)."""
        ok, jobs = guarded(self.message, self.backend.list_jobs)
        if ok:
            done = [j for j in jobs if j.get("status") in ("completed", "paused", "cancelled", "failed", "running")]
            keep = self.job.value
            self.job.options = [(f"{j.get('name') or j['id']} ({j['id']}, {j.get('status')})", j["id"])
                                for j in reversed(done)]
            ids = [v for _, v in self.job.options]
            self.job.value = keep if keep in ids else (ids[0] if ids else None)
        ok, deps = guarded(self.status_html, self.backend.deployments)
        if ok:
            keep = self.deployment.value
            deps = sorted(deps, key=lambda d: (d["status"] == "stopped", d["created_at"]), reverse=False)
            self.deployment.options = [(f"{d['model_name']} [{d['status']}]", d["id"]) for d in deps]
            ids = [d["id"] for d in deps]
            self.deployment.value = keep if keep in ids else (ids[0] if ids else None)
        self.show_status()

    def _load_checkpoints(self) -> None:
        names = ["best", "final"]
        if self.job.value:
            ok, listing = guarded(self.message, self.backend.checkpoints, self.job.value)
            if ok:
                names += [c["path"] for c in listing.get("checkpoints", [])]
        self.checkpoint.options = list(dict.fromkeys(names))
        self.checkpoint.value = "best"

    def _show_provider(self) -> None:
        runpod = self.provider.value == "runpod-serverless"
        self.runpod_box.layout.display = "" if runpod else "none"
        self.local_box.layout.display = "none" if runpod else ""

    # ---- actions -----------------------------------------------------------------------------
    def body(self) -> dict[str, Any]:
        """The ``POST /api/inference/deploy`` body the form describes."""
        body: dict[str, Any] = {"provider": self.provider.value, "training_job_id": self.job.value,
                                "deployment_name": self.name.value.strip() or f"{self.job.value}-{self.checkpoint.value}",
                                "checkpoint_selection": self.checkpoint.value,
                                "auto_stop_on_budget": bool(self.auto_stop.value)}
        if self.budget.value:
            body["budget_limit"] = float(self.budget.value)
        if self.provider.value == "runpod-serverless":
            body.update(gpu_type=self.gpu.value, min_workers=self.min_workers.value, max_workers=self.max_workers.value)
        else:
            body["cost_per_request"] = float(self.cost.value)
        return body

    def deploy(self) -> dict[str, Any] | None:
        if not self.job.value:
            self.message.value = inline_error_html("pick a job with checkpoints first")
            return None
        self.message.value = "<i>deploying…</i>"
        ok, out = guarded(self.message, self.backend.deploy, self.body())
        if not ok:
            return None
        self.message.value = ok_html(f"deployed as model {out['model_name']} ({out['status']})")
        self.refresh()
        self.deployment.value = out["deployment_id"]
        return out

    def save_runpod_key(self) -> None:
        value = self.runpod_key.value.strip()
        if not value:
            self.message.value = inline_error_html("enter the RunPod API key first")
            return
        ok, _ = guarded(self.message, self.backend.set_secret, "RUNPOD_API_KEY", value)
        self.runpod_key.value = ""  # never kept in the page
        if ok:
            self.message.value = ok_html("RunPod key saved (encrypted; it is never shown again)")

    def show_status(self) -> dict[str, Any] | None:
        if not self.deployment.value:
            self.status = None
            self.status_html.value = "<i>no deployment yet</i>"
            self._set_chat_enabled(False)
            return None
        ok, st = guarded(self.status_html, self.backend.deployment_status, self.deployment.value)
        if not ok:
            return None
        self.status = st
        self.status_html.value = gauge_html(st)
        live = st["status"] in ("deploying", "active", "scaling")
        self.stop_button.disabled = not live
        self._set_chat_enabled(live)
        self._ensure_polling()
        return st

    def stop(self) -> None:
        if not self.deployment.value:
            return
        ok, out = guarded(self.status_html, self.backend.stop_deployment, self.deployment.value)
        if ok:
            fs = out["final_status"]
            self.message.value = ok_html(f"stopped: {fs['total_requests']} requests, ${fs['final_spend']:.4f} spent")
            self.refresh()

    def send_message(self) -> dict[str, Any] | None:
        text = self.prompt.value.strip()
        if not text or not self.status:
            return None
        self.history.append({"role": "user", "content": text})
        self.prompt.value = ""
        self.chat_error.value = ""
        self._render_chat(pending=True)
        t0 = time.perf_counter()
        ok, reply = guarded(self.chat_error, self.backend.chat, self.status["model_name"], list(self.history),
                            int(self.max_tokens.value), float(self.temperature.value))
        if not ok:
            self.history.pop()
            self._render_chat()
            self.show_status()
            return None
        took = (time.perf_counter() - t0) * 1000
        content = reply["choices"][0]["message"]["content"]
        use = reply.get("usage") or {}
        self.history.append({"role": "assistant", "content": content,
                             "meta": f"{use.get('completion_tokens')} tokens · {took:.0f} ms · {reply['id']}"})
        self._render_chat()
        self.show_status()
        self.last_reply_id = reply["id"]
        self._feedback_enabled(True)
        self.feedback_msg.value = ""
        return reply

    def rate(self, rating: int | None = None, success: bool | None = None) -> dict[str, Any] | None:
        """Feedback on the last reply (its id is the usage record's): shows in the analytics' quality."""
        if not self.last_reply_id:
            return None
        rating = rating or self.stars.value  # one verdict per reply: the stars and the thumb together
        success = self._thumb if success is None else success
        self._thumb = success
        ok, out = guarded(self.feedback_msg, self.backend.rate_reply, self.last_reply_id, rating, success,
                          self.feedback_comment.value.strip() or None)
        if ok:
            said = " · ".join(x for x in ("👍" if success else "👎" if success is False else "",
                                          "★" * rating if rating else "") if x)
            self.feedback_msg.value = ok_html(f"rated {self.last_reply_id}: {said}")
        return out

    def _feedback_enabled(self, on: bool) -> None:
        for w in (self.thumb_up, self.thumb_down, self.stars, self.feedback_comment):
            w.disabled = not on
        self._thumb = None
        if on:
            with self.stars.hold_trait_notifications():
                self.stars.value = None

    def _clear_chat(self) -> None:
        self.history = []
        self.last_reply_id = None
        self._feedback_enabled(False)
        self._render_chat()

    def _render_chat(self, pending: bool = False) -> None:
        turns = []
        for m in self.history:
            cls = "wb-chat-user" if m["role"] == "user" else "wb-chat-bot"
            meta = f"<div class='wb-chat-meta'>{esc(m['meta'])}</div>" if m.get("meta") else ""
            turns.append(f"<div class='wb-chat-turn {cls}'>{esc(m['content'])}{meta}</div>")
        if pending:
            turns.append("<div class='wb-chat-turn wb-chat-bot'><i>…</i></div>")
        self.transcript.value = "".join(turns)

    def _set_chat_enabled(self, on: bool) -> None:
        self.send.disabled = not on
        self.prompt.disabled = not on

    # ---- live status -------------------------------------------------------------------------
    def _ensure_polling(self) -> None:
        if not self._poll or (self._poller is not None and self._poller.is_alive()):
            return
        self._poller = threading.Thread(target=self._poll_loop, name="wb-deploy-status", daemon=True)
        self._poller.start()

    def _poll_loop(self) -> None:
        """Refresh the status while a live deployment is shown (spend moves as others call it)."""
        while not self._stop_polling.wait(POLL_S):
            st = self.status
            if not st or st["status"] not in ("deploying", "active", "scaling"):
                continue
            try:
                fresh = self.backend.deployment_status(st["id"])
            except Exception:  # noqa: BLE001 - the next tick tries again; buttons show real errors
                continue
            if self.status and fresh["id"] == self.status["id"]:
                self.status = fresh
                self.status_html.value = gauge_html(fresh)

    def close(self) -> None:
        self._stop_polling.set()
