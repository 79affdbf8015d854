// The LocalLab chat page: talks to the same HTTP API as every other client.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const state = { messages: [], controller: null, lastTokens: null, lastTime: null };

  function headers() {
    const h = { "Content-Type": "application/json" };
    const key = localStorage.getItem("locallab-api-key");
    if (key) h.Authorization = `Bearer ${key}`;
    return h;
  }

  async function askForKey() {
    const dialog = $("key-dialog");
    $("key-input").value = "";
    dialog.showModal();
    await new Promise((resolve) => dialog.addEventListener("close", resolve, { once: true }));
    const key = $("key-input").value.trim();
    if (key) localStorage.setItem("locallab-api-key", key);
  }

  async function api(path, options = {}) {
    for (let attempt = 0; attempt < 2; attempt++) {
      const response = await fetch(path, { ...options, headers: headers() });
      if (response.status === 401 && attempt === 0) { await askForKey(); continue; }
      return response;
    }
  }

  async function errorText(response) {
    try { const body = await response.json(); return body.detail || JSON.stringify(body); }
    catch { return `${response.status} ${response.statusText}`; }
  }

  function addMessage(role, text) {
    const div = document.createElement("div");
    div.className = `msg ${role}`;
    div.innerHTML = role === "user" ? window.renderMarkdown(text) : "";
    $("chat").appendChild(div);
    div.scrollIntoView({ block: "end" });
    return div;
  }

  async function loadModels() {
    const response = await api("/models/available");
    if (!response.ok) { $("model-status").textContent = await errorText(response); return; }
    const listing = await response.json();
    const select = $("model");
    select.innerHTML = "";
    for (const model of listing.models) {
      const option = new Option(model.installed ? model.name : `${model.name} (not installed)`, model.id);
      option.disabled = !model.installed;
      option.selected = model.id === listing.current_model;
      select.appendChild(option);
    }
    $("model-status").textContent = listing.current_model ? "ready" : "no model loaded";
  }

  async function switchModel() {
    const id = $("model").value;
    $("model-status").textContent = `loading ${id}…`;
    $("model").disabled = true;
    const response = await api("/models/load", { method: "POST", body: JSON.stringify({ model_id: id }) });
    $("model").disabled = false;
    $("model-status").textContent = response.ok ? "ready" : await errorText(response);
    await loadModels();
  }

  function sampling() {
    const number = (id) => Number($(id).value);
    return { temperature: number("temperature"), top_p: number("top_p"), max_length: Math.max(1, number("max_length")) };
  }

  async function send(text) {
    state.messages.push({ role: "user", content: text });
    addMessage("user", text);
    const bubble = addMessage("assistant", "");
    const system = $("system").value.trim();
    const messages = system ? [{ role: "system", content: system }, ...state.messages] : state.messages;
    const body = { messages, stream: true, model_id: $("model").value || null, ...sampling() };
    state.controller = new AbortController();
    $("send").hidden = true;
    $("stop").hidden = false;
    let answer = "";
    let note = "";
    try {
      const response = await fetch("/chat", {
        method: "POST", headers: headers(), body: JSON.stringify(body), signal: state.controller.signal,
      });
      if (response.status === 401) { await askForKey(); throw new Error("API key saved; send the message again."); }
      if (!response.ok) throw new Error(await errorText(response));
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (!frame.startsWith("data: ") || frame === "data: [DONE]") continue;
          const event = JSON.parse(frame.slice(6));
          if (event.detail) throw new Error(event.detail);
          const choice = (event.choices || [])[0] || {};
          answer += (choice.delta && choice.delta.content) || "";
          if (choice.finish_reason && choice.finish_reason !== "stop") note = `(${choice.finish_reason})`;
          bubble.innerHTML = window.renderMarkdown(answer);
          bubble.scrollIntoView({ block: "end" });
        }
      }
    } catch (error) {
      if (error.name === "AbortError") note = "(stopped)";
      else { bubble.classList.add("error"); note = error.message; }
    } finally {
      state.controller = null;
      $("send").hidden = false;
      $("stop").hidden = true;
    }
    state.messages.push({ role: "assistant", content: answer });
    bubble.innerHTML = window.renderMarkdown(answer) + (note ? `<div class="note"></div>` : "");
    if (note) bubble.querySelector(".note").textContent = note;
    bubble.dataset.done = "true";
  }

  async function refreshSystem() {
    const response = await api("/system/info");
    if (!response.ok) return;
    const info = await response.json();
    const now = Date.now() / 1000;
    let rate = "–";
    if (state.lastTokens !== null && now > state.lastTime) {
      rate = ((info.tokens.generated - state.lastTokens) / (now - state.lastTime)).toFixed(1);
    }
    state.lastTokens = info.tokens.generated;
    state.lastTime = now;
    const rows = {
      CPU: `${info.cpu_usage.toFixed(0)}% of ${info.cpu.cores} cores`,
      Memory: `${info.memory_usage.toFixed(0)}% (server ${(info.memory.process_rss / 2 ** 20).toFixed(0)} MB)`,
      "Tokens/s": rate,
      Active: info.requests.active,
      Queued: info.requests.queued,
      Parallel: info.parallel ?? "–",
      Model: info.active_model || "none",
    };
    const list = $("system-info");
    list.innerHTML = "";
    for (const [name, value] of Object.entries(rows)) {
      const dt = document.createElement("dt"); dt.textContent = name;
      const dd = document.createElement("dd"); dd.textContent = value;
      list.append(dt, dd);
    }
  }

  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("input").value.trim();
    if (!text || state.controller) return;
    $("input").value = "";
    send(text);
  });
  $("input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); $("composer").requestSubmit(); }
  });
  $("stop").addEventListener("click", () => state.controller && state.controller.abort());
  $("model").addEventListener("change", switchModel);
  $("new-chat").addEventListener("click", () => { state.messages = []; $("chat").innerHTML = ""; });
  $("toggle-settings").addEventListener("click", () => {
    const panel = $("panel");
    panel.hidden = !panel.hidden;
    $("toggle-settings").setAttribute("aria-expanded", String(!panel.hidden));
    if (!panel.hidden) refreshSystem();
  });

  loadModels();
  setInterval(() => { if (!$("panel").hidden) refreshSystem(); }, 5000);
})();
