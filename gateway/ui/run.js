// run.js: the Run page (a verb on a selector, per-node results streamed as
// NDJSON) and the Ask page (sentence → plan shown → confirmation when a step
// changes things → results streamed per step and node). Whether a verb or a
// step is mutating is the server's catalogue's word, never guessed here.
import { h, clear, fill, fmtNum } from "./dom.js";
import { postJSON, postStream } from "./api.js";

const MAX_OUT = 4000;

function outputText(r) {
  let s = "";
  if (typeof r.text === "string" && r.text) s = r.text;
  else if (r.output !== undefined && r.output !== null) s = JSON.stringify(r.output);
  return s.length > MAX_OUT ? s.slice(0, MAX_OUT) + " …" : s;
}

function resultRow(r) {
  const st = String(r.status || "?");
  return h("tr", { "data-chevron": r.chevron, "data-status": st },
    h("td", { class: "mono", text: r.chevron }),
    h("td", { text: r.name }),
    h("td", { class: `status-${st.replace(/[^a-z]/g, "")}`, text: st }),
    h("td", { class: "num", text: fmtNum(r.ms, 1) }),
    h("td", null, r.error ? h("span", { class: "status-error", text: (r.code ? r.code + ": " : "") + r.error }) : null,
      h("pre", { class: "out", text: outputText(r) })));
}

export function resultsTable(id) {
  const body = h("tbody");
  const table = h("table", { id, class: "results" },
    h("thead", null, h("tr", null, ["Node", "Name", "Status", "ms", "Output"].map((c) =>
      h("th", { scope: "col", class: c === "ms" ? "num" : null, text: c })))),
    body);
  return { table, add: (r) => body.append(resultRow(r)) };
}

function errorBox(err) {
  return h("p", { class: "error", role: "alert", text: String(err) });
}

function isMutating(spec) {
  return spec && (spec.risk === "mutate" || spec.risk === "dangerous");
}

// confirmBox asks before something changes things; resolves true or false.
function confirmBox(parent, text) {
  return new Promise((resolve) => {
    const done = (v) => { box.remove(); resolve(v); };
    const yes = h("button", { type: "button", id: "confirm-yes", onclick: () => done(true), text: "Yes, run it" });
    const box = h("div", { class: "confirm", role: "alertdialog", "aria-label": "Confirm" },
      h("p", { text }),
      h("div", { class: "actions" }, yes, " ",
        h("button", { type: "button", class: "secondary", onclick: () => done(false), text: "Cancel" })));
    box.addEventListener("keydown", (ev) => { if (ev.key === "Escape") done(false); });
    parent.append(box);
    yes.focus();
  });
}

export class RunView {
  constructor(app) { this.app = app; }

  async mount(root, params) {
    this.root = root;
    this.abort = new AbortController();
    const sel = h("input", { id: "run-selector", name: "selector", value: params.get("sel") || "all", required: true,
      autocomplete: "off", spellcheck: "false" });
    this.verb = h("select", { id: "run-verb", name: "verb" });
    this.args = h("textarea", { id: "run-args", name: "args", placeholder: "{} (JSON object, optional)", spellcheck: "false" });
    const timeout = h("input", { id: "run-timeout", name: "timeout", value: "10s", size: 6 });
    this.verbHelp = h("span", { class: "hint", id: "run-verb-help" });
    this.argsHelp = h("span", { class: "hint", id: "run-args-help" });
    this.go = h("button", { type: "submit", id: "run-go", text: "Run" });
    this.out = h("div", { id: "run-out" });
    const form = h("form", { class: "run panel", id: "run-form" },
      h("label", { for: "run-selector", text: "Selector" }), sel,
      h("label", { for: "run-verb", text: "Verb" }), h("div", null, this.verb, " ", this.verbHelp),
      h("label", { for: "run-args", text: "Arguments" }), h("div", null, this.args, h("br"), this.argsHelp),
      h("label", { for: "run-timeout", text: "Timeout" }), timeout,
      h("div", { class: "actions" }, this.go));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.run(sel.value.trim(), this.verb.value, this.args.value.trim(), timeout.value.trim());
    });
    this.verb.addEventListener("change", () => this.describe());
    fill(root, h("h1", { text: "Run a command" }),
      h("p", { class: "hint", text: "Selector: a chevron prefix (3.12), all, or filters such as caps=gpu,load<0.5." }),
      form, this.out);
    try {
      this.specs = await this.app.commands();
    } catch (e) {
      this.specs = [];
      this.out.append(errorBox(`the command catalogue could not be read: ${e}`));
    }
    const want = params.get("verb") || "ping";
    for (const s of this.specs) {
      this.verb.append(h("option", { value: s.name, selected: s.name === want, text: `${s.name} (${s.risk})` }));
    }
    this.describe();
  }

  spec(name) { return (this.specs || []).find((s) => s.name === name); }

  // describe shows the verb's summary, risk and tier, and its arguments
  // from the catalogue's schema under the arguments box.
  describe() {
    const s = this.spec(this.verb.value);
    this.verbHelp.textContent = s ? `${s.summary || ""} — risk ${s.risk}, tier ${s.tier}` : "";
    const fields = s && s.args && Array.isArray(s.args.fields) ? s.args.fields : [];
    fill(this.argsHelp, fields.length === 0 ? "no arguments" : fields.map((f, i) => [i ? "; " : "",
      h("code", { text: String(f.name) }), ` ${f.type || ""}${f.required ? ", required" : ""}` +
      (Array.isArray(f.enum) && f.enum.length ? `, one of ${f.enum.join("|")}` : "") +
      (f.default ? `, default ${f.default}` : "")]));
  }

  async run(selector, verb, argsText, timeout) {
    clear(this.out);
    const body = { selector, verb };
    if (argsText) {
      let args;
      try { args = JSON.parse(argsText); } catch (e) {
        this.out.append(errorBox(`arguments: not JSON (${e.message})`));
        return;
      }
      if (!args || typeof args !== "object" || Array.isArray(args)) {
        this.out.append(errorBox("arguments: want a JSON object such as {\"metric\": \"cpu\"}"));
        return;
      }
      body.args = args;
    }
    if (timeout) body.timeout = timeout;
    const spec = this.spec(verb);
    if (isMutating(spec)) {
      this.go.disabled = true;
      const yes = await confirmBox(this.out, `${verb} changes things (risk ${spec.risk}). Run it on ${selector}?`);
      this.go.disabled = false;
      if (!yes) {
        this.out.append(h("p", { class: "notice", text: "cancelled: nothing was sent" }));
        return;
      }
    }
    const res = resultsTable("run-results");
    const summary = h("p", { id: "run-summary", class: "hint", role: "status", text: `running ${verb} on ${selector}…` });
    this.out.append(summary, res.table);
    this.go.disabled = true;
    try {
      await postStream("/api/run", body, (line) => {
        if (line.type === "result" && line.result) res.add(line.result);
        else if (line.type === "done" && line.gather && line.gather.summary) summary.textContent = String(line.gather.summary.line || "done");
      }, this.abort.signal);
    } catch (e) {
      if (e.name !== "AbortError") {
        summary.textContent = "failed";
        this.out.append(errorBox(e));
      }
    } finally {
      this.go.disabled = false;
    }
  }

  unmount() { this.abort.abort(); }
}

export class AskView {
  constructor(app) { this.app = app; }

  mount(root) {
    this.root = root;
    this.abort = new AbortController();
    const text = h("textarea", { id: "ask-text", name: "text", maxlength: 2000, placeholder: "scan AI nodes for anomalies" });
    this.out = h("div", { id: "ask-out" });
    this.pending = h("p", { id: "ask-approvals", class: "hint" });
    const form = h("form", { class: "run panel", id: "ask-form" },
      h("label", { for: "ask-text", text: "Ask" }), text,
      h("div", { class: "actions" }, h("button", { type: "submit", id: "ask-plan", text: "Show the plan" })));
    form.addEventListener("submit", (ev) => { ev.preventDefault(); this.plan(text.value.trim()); });
    fill(root, h("h1", { text: "Ask" }),
      h("p", { class: "hint", text: "Say what you want; the plan is shown first, and steps that change things are confirmed before anything runs." }),
      form, this.pending, this.out);
    this.update();
  }

  update() {
    const n = this.app.state.approvals.length;
    fill(this.pending, n ? ["Approvals pending: ", h("a", { href: "#/approvals", text: String(n) })] : "No approvals pending.");
  }

  async plan(text) {
    clear(this.out);
    if (!text) { this.out.append(errorBox("say what to do first")); return; }
    let ans;
    try { ans = await postJSON("/api/ask", { text }); } catch (e) {
      if (e.code === "ambiguous" && e.readings.length) { this.offer(e); return; }
      this.out.append(errorBox(e)); return;
    }
    this.show(ans);
  }

  // offer lists the planner's readings of a sentence it was not sure of;
  // picking one shows its plan as if it had been planned.
  offer(e) {
    const list = h("ol", { id: "ask-readings" }, e.readings.map((r, i) => {
      const b = h("button", { type: "button", "data-reading": String(i + 1), text: String(r.label || "") });
      b.addEventListener("click", async () => {
        clear(this.out);
        let ans;
        try { ans = await postJSON("/api/ask", { plan: r.plan }); } catch (err) { this.out.append(errorBox(err)); return; }
        this.show(ans);
      });
      return h("li", null, b, ` (${Number(r.confidence || 0).toFixed(2)})`);
    }));
    this.out.append(h("section", { class: "panel", id: "ask-ambiguous" },
      h("h2", { text: "Which did you mean?" }), h("p", { class: "hint", text: e.message }), list));
  }

  show(ans) {
    const mutating = Array.isArray(ans.mutating) ? ans.mutating : [];
    const plan = ans.plan;
    this.out.append(planView(plan, ans.tree, mutating));
    const go = h("button", { type: "button", id: "ask-run", text: mutating.length ? "Run (asks to confirm)" : "Run the plan" });
    go.addEventListener("click", async () => {
      go.disabled = true;
      if (mutating.length && !(await confirmBox(this.out, `${mutating.length === 1 ? "Step" : "Steps"} ${mutating.join(", ")} ${mutating.length === 1 ? "changes" : "change"} things. Run the plan?`))) {
        this.out.append(h("p", { class: "notice", text: "cancelled: nothing was run" }));
        go.disabled = false;
        return;
      }
      this.execute(plan);
    });
    this.out.append(h("p", null, go));
  }

  // execute runs exactly the plan that was shown (never the text again:
  // a second planning could read it differently).
  async execute(plan) {
    const box = h("div", { id: "ask-results" });
    const summary = h("p", { id: "ask-summary", class: "hint", role: "status", text: "running…" });
    this.out.append(h("h2", { text: "Results" }), summary, box);
    const steps = new Map();
    const stepBox = (id) => {
      if (!steps.has(id)) {
        const res = resultsTable(`ask-step-${id}`);
        const status = h("span", { class: "badge", text: "running" });
        box.append(h("section", { "data-step": id }, h("h3", null, `step ${id} `, status), res.table));
        steps.set(id, { res, status });
      }
      return steps.get(id);
    };
    try {
      await postStream("/api/ask", { plan, confirm: true }, (line) => {
        const id = String(line.step || "");
        if (line.type === "start") stepBox(id);
        else if (line.type === "node" && line.result) stepBox(id).res.add(line.result);
        else if (line.type === "step" && line.result) {
          const st = stepBox(id);
          st.status.textContent = String(line.result.status || "") + (line.result.reason ? `: ${line.result.reason}` : "");
        } else if (line.type === "done") summary.textContent = String((line.ask && line.ask.summary) || "done");
      }, this.abort.signal);
    } catch (e) {
      if (e.name !== "AbortError") { summary.textContent = "failed"; this.out.append(errorBox(e)); }
    }
    this.app.refreshApprovals();
  }

  unmount() { this.abort.abort(); }
}

function planView(plan, tree, mutating) {
  const p = plan || {};
  const steps = Array.isArray(p.steps) ? p.steps : [];
  return h("section", { class: "panel", id: "ask-plan-view" },
    h("h2", { text: "Plan" }),
    h("p", { class: "hint", text: `planner: ${p.planner || "?"}` + (p.note ? ` — ${p.note}` : "") }),
    tree ? h("pre", { class: "out", text: tree }) : null,
    h("table", null,
      h("thead", null, h("tr", null, ["Step", "Selector", "Verb", "Arguments", "After", "Why", ""].map((c) => h("th", { scope: "col", text: c })))),
      h("tbody", null, steps.map((s) => h("tr", { "data-step": s.id },
        h("td", { class: "mono", text: s.id }),
        h("td", { class: "mono", text: s.selector }),
        h("td", { text: s.verb }),
        h("td", { class: "mono", text: s.args ? JSON.stringify(s.args) : "" }),
        h("td", { text: (s.depends_on || []).join(", ") }),
        h("td", { text: s.why || "" }),
        h("td", null, mutating.includes(s.id) ? h("span", { class: "badge bad", text: "changes things" }) : null))))));
}

