// Where photos come from: a file picker, drag-and-drop, or the device camera (getUserMedia).
import { h, uid } from "./ui.js";

/**
 * A drop zone that is also a file picker (the <input type=file> stays focusable, so it is keyboard
 * reachable), optionally with a camera button. Calls onFile(File) for each photo chosen.
 */
export function photoPicker({ label, onFile, camera = false, multiple = false, name = "photo", cleanups = [] }) {
  const inputId = uid("file");
  const input = h("input", {
    type: "file",
    id: inputId,
    class: "file-input",
    accept: "image/*",
    multiple,
    name,
    onchange: () => {
      for (const file of input.files) onFile(file);
      input.value = "";
    },
  });
  const zone = h(
    "div",
    { class: "dropzone", dataset: { role: "dropzone" } },
    input,
    h("label", { for: inputId }, h("strong", {}, label), h("span", {}, "Drop a photo here, or press to choose a file")),
  );
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const files = [...(e.dataTransfer?.files ?? [])];
    for (const file of multiple ? files : files.slice(0, 1)) onFile(file);
  });
  if (!camera) return zone;
  return h("div", { class: "picker" }, zone, cameraCapture({ onFile, cleanups }));
}

/** "Use camera" → live preview → "Take photo" hands a JPEG File to onFile. Stops the camera when done. */
export function cameraCapture({ onFile, cleanups = [] }) {
  const video = h("video", { class: "camera", autoplay: true, playsInline: true, muted: true, hidden: true, "aria-label": "Camera preview" });
  const status = h("p", { class: "hint", "aria-live": "polite" });
  let stream = null;
  const stop = () => {
    stream?.getTracks().forEach((t) => t.stop());
    stream = null;
    video.srcObject = null;
    video.hidden = true;
    shoot.hidden = true;
    off.hidden = true;
    open.hidden = false;
  };
  const open = h("button", {
    type: "button",
    onclick: async () => {
      status.textContent = "";
      if (!navigator.mediaDevices?.getUserMedia) {
        status.textContent = "This browser cannot use a camera here (cameras need https or localhost).";
        return;
      }
      try {
        stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 1280 } }, audio: false });
      } catch (err) {
        status.textContent = `Camera not available: ${err.message || err.name}`;
        return;
      }
      video.srcObject = stream;
      video.hidden = false;
      video.scrollIntoView({ block: "nearest" }); // the person aims by the preview: keep it on screen
      shoot.hidden = false;
      // A camera's first frames can be black: "Take photo" waits until the second frame is on screen.
      shoot.disabled = true;
      const ready = () => {
        shoot.disabled = false;
        if (document.activeElement === off || document.activeElement === document.body) shoot.focus();
      };
      if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(() => video.requestVideoFrameCallback(ready));
      else video.addEventListener("playing", () => setTimeout(ready, 200), { once: true });
      off.hidden = false;
      open.hidden = true;
      off.focus();
    },
  }, "Use camera");
  const shoot = h("button", {
    type: "button",
    class: "primary",
    hidden: true,
    onclick: async () => {
      if (!video.videoWidth) {
        status.textContent = "The camera has not delivered a frame yet.";
        return;
      }
      const canvas = h("canvas", { width: video.videoWidth, height: video.videoHeight });
      canvas.getContext("2d").drawImage(video, 0, 0);
      const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92));
      onFile(new File([blob], `camera-${Date.now()}.jpg`, { type: "image/jpeg" }));
    },
  }, "Take photo");
  const off = h("button", { type: "button", hidden: true, onclick: stop }, "Stop camera");
  const el = h("div", { class: "camera-box" }, h("div", { class: "row" }, open, shoot, off), video, status);
  cleanups.push(stop); // leaving the page turns the camera off
  return el;
}

/** An <img> for a File (blob: URL, revoked when replaced). */
export function previewImage(file, alt) {
  const img = h("img", { alt, class: "preview" });
  img.src = URL.createObjectURL(file);
  img.addEventListener("load", () => URL.revokeObjectURL(img.src), { once: true });
  img.addEventListener("error", () => {
    URL.revokeObjectURL(img.src);
    img.replaceWith(h("p", { class: "hint" }, `${file.name}: this browser cannot show it as a picture.`));
  }, { once: true });
  return img;
}
