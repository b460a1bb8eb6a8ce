// The dashboard: polls GET /api/dashboard/data and renders it. Every element is built with textContent (data is
// never parsed as HTML). The function key comes from this page's own ?code= and is sent as x-functions-key.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const params = new URLSearchParams(window.location.search);
  const key = params.get("code") || "";
  const pollMs = 1000 * (Number(document.body.dataset.pollS) || 3);
  const rendered = {};
  let failures = 0;

  // ------------------------------------------------------------------ small helpers
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = String(value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }
  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    for (const child of children) if (child) node.append(child);
    return node;
  }
  function when(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    return new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19) + "Z";
  }
  function fig(value, digits) {
    return typeof value === "number" ? value.toFixed(digits === undefined ? 4 : digits) : "–";
  }
  function words(value) {
    return String(value || "").replace(/_/g, " ");
  }
  function withKey(path) {
    return key ? path + "?code=" + encodeURIComponent(key) : path;
  }
  function runLink(runId) {
    if (!runId) return document.createTextNode("–");
    return el("a", {href: withKey("runs/" + encodeURIComponent(runId)), text: runId});
  }
  function badge(outcome) {
    return el("span", {class: "badge badge-" + String(outcome).toLowerCase(), text: words(outcome)});
  }
  function table(caption, headers, rows) {
    const head = el("tr", {}, ...headers.map((h) => el("th", {scope: "col", text: h})));
    const body = el("tbody");
    for (const cells of rows) {
      body.append(el("tr", {}, ...cells.map((c) => el("td", {}, c instanceof Node ? c : document.createTextNode(
        c === null || c === undefined ? "–" : String(c))))));
    }
    return el("table", {}, el("caption", {text: caption}), el("thead", {}, head), body);
  }
  function empty(text) {
    return el("p", {class: "empty", text: text});
  }

  // A line chart: series = [{name, points: [{x, y, label}]}]; x is a position (0..n-1), y in [lo, hi].
  function lineChart(id, title, xLabels, series, lo, hi) {
    const width = 720, height = 260, left = 48, right = 12, top = 12, bottom = 36;
    const n = Math.max(xLabels.length, 1);
    const xs = (i) => left + (n === 1 ? (width - left - right) / 2 : i * (width - left - right) / (n - 1));
    const ys = (v) => top + (hi - v) * (height - top - bottom) / (hi - lo || 1);
    const titleId = id + "-title";
    const chart = svg("svg", {viewBox: `0 0 ${width} ${height}`, role: "img", "aria-labelledby": titleId,
                              class: "chart", id: id});
    chart.append(svg("title", {id: titleId}, document.createTextNode(title)));
    for (let t = 0; t <= 4; t++) {
      const v = lo + (hi - lo) * t / 4;
      chart.append(svg("line", {x1: left, x2: width - right, y1: ys(v), y2: ys(v), class: "grid"}));
      const label = svg("text", {x: left - 6, y: ys(v) + 4, class: "axis", "text-anchor": "end"});
      label.textContent = v.toFixed(hi - lo < 0.05 ? 3 : 2);
      chart.append(label);
    }
    xLabels.forEach((text, i) => {
      const label = svg("text", {x: xs(i), y: height - bottom + 16, class: "axis", "text-anchor": "middle"});
      label.textContent = text;
      chart.append(label);
    });
    series.forEach((s, k) => {
      const pts = s.points.filter((p) => typeof p.y === "number");
      if (pts.length > 1) {
        chart.append(svg("polyline", {points: pts.map((p) => `${xs(p.x)},${ys(p.y)}`).join(" "),
                                      class: "line series-" + k, fill: "none"}));
      }
      for (const p of pts) {
        const dot = svg("circle", {cx: xs(p.x), cy: ys(p.y), r: 4, class: "point series-" + k,
                                   "data-series": s.name});
        dot.append(svg("title", {}, document.createTextNode(`${s.name}: ${p.label || ""} ${p.y.toFixed(4)}`)));
        chart.append(dot);
      }
    });
    const legend = el("ul", {class: "legend"}, ...series.map((s, k) =>
      el("li", {}, el("span", {class: "swatch series-" + k, "aria-hidden": "true"}), document.createTextNode(s.name))));
    return el("figure", {}, chart, legend, el("figcaption", {text: title}));
  }
  function bounds(values, floor) {
    const nums = values.filter((v) => typeof v === "number");
    if (!nums.length) return [floor, 1];
    const lo = Math.min(...nums), hi = Math.max(...nums);
    const pad = Math.max((hi - lo) * 0.1, 0.01);
    return [Math.max(0, lo - pad), hi + pad];
  }

  // ------------------------------------------------------------------ sections
  const sections = {
    timeline(data) {
      if (!data.timeline.length) return [empty("Nothing has fired yet: upload a dataset or ask for a retrain.")];
      const rows = data.timeline.map((e) => [when(e.started_at), el("span", {class: "kind", text: e.kind}),
        badge(e.outcome), e.dataset_version === null ? "–" : "v" + e.dataset_version, runLink(e.run_id),
        e.model_version === null ? "–" : "v" + e.model_version, e.reason || e.source || "",
        e.has_report ? el("a", {href: withKey("drift-reports/" + encodeURIComponent(e.id)), text: "report"}) : "–"]);
      const note = data.audit_window.read >= data.audit_window.limit ?
        ` (the newest ${data.timeline.length} of the last ${data.audit_window.limit} records)` : "";
      return [table("Triggers, requests, runs and outcomes, newest first" + note,
        ["When", "What", "Outcome", "Dataset", "Run", "Model", "Why", "Drift report"], rows)];
    },
    models(data) {
      if (!data.models.length) return [empty("No model is registered yet.")];
      const rows = data.models.slice().reverse().map((m) => {
        const c = m.comparison;
        return ["v" + m.version, badge(m.state), "v" + m.dataset_version, fig(m.held_out.auc), fig(m.held_out.accuracy),
          c ? fig(c.challenger.auc) : "–", c ? fig(c.champion.auc) : "–", c ? words(c.decision) : "–",
          c ? c.reason : "", runLink(m.run_id), when(m.registered_at)];
      });
      return [table("Model versions, newest first: held-out figures and each champion/challenger comparison",
        ["Version", "State", "Dataset", "Held-out AUC", "Held-out accuracy", "Challenger AUC", "Champion AUC",
          "Decision", "Reason", "Run", "Registered"], rows)];
    },
    quality(data) {
      const parts = [];
      if (data.models.length) {
        const labels = data.models.map((m) => "v" + m.version);
        const held = {name: "held-out AUC", points: data.models.map((m, i) => ({x: i, y: m.held_out.auc,
          label: "v" + m.version}))};
        const challenger = {name: "challenger AUC at its decision", points: data.models.map((m, i) => ({x: i,
          y: m.comparison ? m.comparison.challenger.auc : null, label: "v" + m.version}))};
        const champion = {name: "champion AUC at that decision", points: data.models.map((m, i) => ({x: i,
          y: m.comparison ? m.comparison.champion.auc : null, label: "v" + m.version}))};
        const all = [held, challenger, champion];
        const [lo, hi] = bounds(all.flatMap((s) => s.points.map((p) => p.y)), 0.5);
        parts.push(lineChart("chart-models", "AUC of each model version", labels, all, lo, hi));
      } else {
        parts.push(empty("No model is registered yet."));
      }
      if (data.replay && data.replay.periods.length) {
        const periods = data.replay.periods;
        const labels = periods.map((p) => "P" + p.period);
        const series = [["live model (ours)", "ours_auc"], ["first model, never retrained", "static_auc"],
          ["default LightGBM retrained", "lightgbm_auc"]].map(([name, field]) => ({name: name,
          points: periods.map((p, i) => ({x: i, y: p[field], label: "period " + p.period}))}));
        const [lo, hi] = bounds(series.flatMap((s) => s.points.map((p) => p.y)), 0.5);
        parts.push(lineChart("chart-replay", "Replay: AUC on each next period before training on it", labels,
          series, lo, hi));
      }
      return parts;
    },
    drift(data) {
      const checks = data.drift.checks;
      if (!checks.length) return [empty("No drift check has reached a verdict yet.")];
      const scored = checks.filter((c) => Object.keys(c.scores).length);  // a check without enough data has none
      const labels = scored.map((c) => when(c.at).slice(5, 16));
      const top = data.drift.columns.map((col) => [col, Math.max(...scored.map((c) => c.scores[col] || 0))])
        .sort((a, b) => b[1] - a[1]).slice(0, 6).map(([col]) => col);
      const series = top.map((col) => ({name: col, points: scored.map((c, i) => ({x: i, y: c.scores[col],
        label: when(c.at)}))}));
      const [lo, hi] = bounds(series.flatMap((s) => s.points.map((p) => p.y)), 0);
      const rows = checks.slice().reverse().map((c) => [when(c.at), badge(c.outcome), fig(c.drift_share, 2),
        c.drifted_columns.join(", ") || "none",
        c.has_report ? el("a", {href: withKey("drift-reports/" + encodeURIComponent(c.audit_id)), text: "report"}) :
          "–"]);
      return [scored.length ? lineChart("chart-drift", "Drift score per column (the six highest), one point per " +
        "check with a verdict", labels, series, Math.min(lo, 0), hi) : empty("No check had enough data to score."),
        table("Drift checks, newest first", ["When", "Outcome", "Drifted share", "Drifted columns", "Report"], rows)];
    },
    outbox(data) {
      if (!data.outbox.length) return [empty("The outbox is empty: nothing waits to be submitted.")];
      const now = data.generated_at;
      const rows = data.outbox.map((r) => [badge(r.state), r.trigger, r.reason, "v" + r.dataset_version,
        when(r.requested_at), r.attempts, r.next_attempt_at === null ? "–" :
          when(r.next_attempt_at) + (r.next_attempt_at > now ? ` (in ${Math.round(r.next_attempt_at - now)} s)` : ""),
        r.last_error || "–"]);
      return [table("Retrain requests not yet submitted", ["State", "Trigger", "Reason", "Dataset", "Requested",
        "Attempts", "Next attempt", "Last error"], rows)];
    },
  };

  // What each tab is drawn from: a tab is redrawn only when one of these changed.
  const READS = {timeline: ["timeline", "audit_window"], models: ["models"], quality: ["models", "replay"],
                 drift: ["drift"], outbox: ["outbox"]};

  function render(data) {
    document.getElementById("live-version").textContent =
      data.live_version === null ? "none yet" : "v" + data.live_version;
    for (const [name, build] of Object.entries(sections)) {
      const fingerprint = JSON.stringify(READS[name].map((field) => data[field]));
      if (rendered[name] === fingerprint) continue;  // unchanged: leave the DOM (and the focus) alone
      rendered[name] = fingerprint;
      document.getElementById(name + "-body").replaceChildren(...build(data));
    }
  }

  async function poll() {
    const status = document.getElementById("status");
    try {
      const answer = await fetch("dashboard/data", {headers: {"x-functions-key": key}, cache: "no-store",
                                                    credentials: "omit"});
      if (answer.status === 401) {
        status.textContent = "Not authorised: open this page with ?code=<function key> (`retrain keys --json` " +
          "prints dashboard_url).";
        return setTimeout(poll, pollMs * 5);
      }
      if (!answer.ok) throw new Error("HTTP " + answer.status);
      const data = await answer.json();
      render(data);
      failures = 0;
      status.textContent = "Updated " + when(data.generated_at);
      document.body.dataset.generatedAt = String(data.generated_at);
    } catch (err) {
      failures += 1;
      status.textContent = "Could not refresh (" + err.message + "); retrying.";
    }
    setTimeout(poll, pollMs * Math.min(2 ** failures, 8));
  }

  // ------------------------------------------------------------------ tabs (WAI-ARIA tabs pattern)
  const tabs = Array.from(document.querySelectorAll('[role="tab"]'));
  function select(tab, focus) {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute("aria-selected", on ? "true" : "false");
      t.tabIndex = on ? 0 : -1;
      document.getElementById(t.getAttribute("aria-controls")).hidden = !on;
    }
    if (focus) tab.focus();
    history.replaceState(null, "", window.location.pathname + window.location.search + "#" + tab.id.slice(4));
  }
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => select(tab, false));
    tab.addEventListener("keydown", (event) => {
      const moves = {ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1};
      if (!(event.key in moves)) return;
      event.preventDefault();
      select(tabs[(moves[event.key] + tabs.length) % tabs.length], true);
    });
  });
  const start = tabs.find((t) => t.id === "tab-" + window.location.hash.slice(1));
  if (start) select(start, false);
  poll();
})();
