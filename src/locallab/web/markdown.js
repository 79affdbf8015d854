// A small Markdown renderer for chat answers: code blocks (with light highlighting), inline code,
// bold, italics, headings, lists, links and paragraphs. Input is escaped first: the model's text can
// never become live HTML.
"use strict";
(function () {
  const KEYWORDS = new Set(("def class return if elif else for while in import from as with try except " +
    "finally raise lambda yield async await function const let var new this null true false None True False " +
    "fn pub struct impl use match int float char void public private static package func go type interface").split(" "));

  function escapeHtml(text) {
    return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  }

  function highlight(code) {
    // code is already escaped; tokens: comments, strings, numbers, words
    const pattern = /(#[^\n]*|\/\/[^\n]*)|(&quot;.*?&quot;|'[^'\n]*')|(\b\d+(?:\.\d+)?\b)|([A-Za-z_]\w*)/g;
    return code.replace(pattern, (m, com, str, num, word) => {
      if (com) return `<span class="tok-com">${com}</span>`;
      if (str) return `<span class="tok-str">${str}</span>`;
      if (num) return `<span class="tok-num">${num}</span>`;
      if (KEYWORDS.has(word)) return `<span class="tok-kw">${word}</span>`;
      return m;
    });
  }

  function inline(text) {
    return text
      .replace(/`([^`\n]+)`/g, (m, c) => `<code>${c}</code>`)
      .replace(/\*\*([^*\n]+)\*\*/g, "<strong>$1</strong>")
      .replace(/(^|[^*])\*([^*\n]+)\*/g, "$1<em>$2</em>")
      .replace(/\[([^\]\n]+)\]\((https?:\/\/[^)\s]+)\)/g, '<a href="$2" target="_blank" rel="noopener noreferrer">$1</a>');
  }

  function render(source) {
    const parts = escapeHtml(source).split(/```/);
    let html = "";
    parts.forEach((part, i) => {
      if (i % 2 === 1) {  // inside a code fence; an unclosed fence (still streaming) renders as code too
        const newline = part.indexOf("\n");
        const lang = newline > 0 ? part.slice(0, newline).trim() : "";
        const code = newline >= 0 ? part.slice(newline + 1) : part;
        html += `<pre><code data-lang="${lang}">${highlight(code.replace(/\n$/, ""))}</code></pre>`;
        return;
      }
      for (const block of part.split(/\n{2,}/)) {
        const lines = block.split("\n").filter((l) => l.trim() !== "");
        if (!lines.length) continue;
        const heading = lines[0].match(/^(#{1,6})\s+(.*)$/);
        if (heading && lines.length === 1) {
          const level = heading[1].length;
          html += `<h${level}>${inline(heading[2])}</h${level}>`;
        } else if (lines.every((l) => /^\s*[-*]\s+/.test(l))) {
          html += "<ul>" + lines.map((l) => `<li>${inline(l.replace(/^\s*[-*]\s+/, ""))}</li>`).join("") + "</ul>";
        } else if (lines.every((l) => /^\s*\d+[.)]\s+/.test(l))) {
          html += "<ol>" + lines.map((l) => `<li>${inline(l.replace(/^\s*\d+[.)]\s+/, ""))}</li>`).join("") + "</ol>";
        } else {
          html += `<p>${lines.map(inline).join("<br>")}</p>`;
        }
      }
    });
    return html;
  }

  window.renderMarkdown = render;
})();
