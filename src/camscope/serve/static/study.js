// The study page: one trial at a time, one answer per click. Names of methods and models never
// reach this page, nor trial ids (each trial comes with a ticket valid for this session only);
// the server writes every answer to disk before replying.
const $ = (id) => document.getElementById(id);
let participant = "";
let session = "";
let current = null;
let shownAt = 0;
let busy = false;

async function call(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.detail || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

async function openSession() {
  const form = new FormData();
  form.append("participant", participant);
  session = (await call("api/study/session", { method: "POST", body: form })).session;
}

// A call of this session; a session the server no longer knows (it restarted) is opened again
// with the same name, and the participant goes on at their first unanswered trial.
async function withSession(fn) {
  try {
    return await fn();
  } catch (err) {
    if (err.status !== 401) throw err;
    await openSession();
    return next();
  }
}

function fail(err) {
  $("error").textContent = err.message;
  $("error").hidden = false;
}

async function next() {
  $("error").hidden = true;
  const trial = await call(`api/study/next?session=${encodeURIComponent(session)}`);
  $("progress-text").textContent = `${participant} · trial ${Math.min(trial.position + 1, trial.total)} of ${trial.total}`;
  $("fill").style.width = `${Math.round((100 * trial.position) / trial.total)}%`;
  if (trial.done) {
    $("trial").hidden = true;
    $("done").hidden = false;
    return;
  }
  current = trial;
  $("question").textContent = trial.question;
  $("predicted").textContent = trial.label ? `Predicted class: ${trial.label}` : "";
  const pictures = $("pictures");
  pictures.innerHTML = "";
  trial.pictures.forEach((png, i) => {
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.src = `data:image/png;base64,${png}`;
    img.alt = trial.pictures.length > 1 ? (i === 0 ? "left map" : "right map") : "map";
    figure.appendChild(img);
    if (trial.pictures.length > 1) {
      const caption = document.createElement("figcaption");
      caption.textContent = i === 0 ? "Left" : "Right";
      figure.appendChild(caption);
    }
    pictures.appendChild(figure);
  });
  const options = $("options");
  options.innerHTML = "";
  trial.options.forEach((option, i) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "btn option";
    button.dataset.choice = option.id;
    button.textContent = `${i + 1}. ${option.label}`;
    button.addEventListener("click", () => answer(option.id));
    options.appendChild(button);
  });
  $("keys").textContent = `Keys 1 to ${trial.options.length} choose too.`;
  $("trial").hidden = false;
  shownAt = performance.now();
  busy = false;
}

async function answer(choice) {
  if (busy || !current) return;
  busy = true;
  document.querySelectorAll(".option").forEach((b) => { b.disabled = true; });
  const form = new FormData();
  form.append("session", session);
  form.append("trial", current.trial);
  form.append("choice", choice);
  form.append("ms", String(Math.max(1, Math.round(performance.now() - shownAt))));
  try {
    await withSession(async () => {
      await call("api/study/answer", { method: "POST", body: form });
      await next();
    });
  } catch (err) {
    busy = false;
    document.querySelectorAll(".option").forEach((b) => { b.disabled = false; });
    fail(err);
  }
}

document.addEventListener("keydown", (e) => {
  if (!current || $("trial").hidden) return;
  const index = Number(e.key) - 1;
  if (index >= 0 && index < current.options.length) answer(current.options[index].id);
});

$("start-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  participant = $("participant").value.trim();
  if (!participant) return;
  localStorage.setItem("camscope-participant", participant);
  $("welcome").hidden = true;
  try {
    await openSession();
    await next();
  } catch (err) {
    fail(err);
  }
});

(async () => {
  try {
    const about = await call("api/study");
    $("intro").textContent = `${about.total} short questions. ${about.question}`;
    $("participant").value = localStorage.getItem("camscope-participant") || "";
    document.body.dataset.ready = "true";
  } catch (err) {
    fail(err);
  }
})();
