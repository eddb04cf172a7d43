/* Optional sound for new HIGH alarms. Browsers block audio until the user acts, so it starts
   only from the Sound button. Tones are generated with WebAudio (no audio files): a HIGH
   burst of 3 + 2 pulses, in the spirit of the IEC 60601-1-8 high-priority pattern. */
"use strict";
const Sound = (() => {
  let ctx = null;
  let enabled = false;

  function pulse(at, freq, dur) {
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.type = "triangle";
    osc.frequency.value = freq;
    gain.gain.setValueAtTime(0.0001, at);
    gain.gain.exponentialRampToValueAtTime(0.35, at + 0.02);
    gain.gain.setValueAtTime(0.35, at + dur - 0.03);
    gain.gain.exponentialRampToValueAtTime(0.0001, at + dur);
    osc.connect(gain).connect(ctx.destination);
    osc.start(at);
    osc.stop(at + dur + 0.02);
  }

  function count() {
    document.body.dataset.tones = String(Number(document.body.dataset.tones || 0) + 1);
  }

  function high() {
    if (!enabled || !ctx) return false;
    const t = ctx.currentTime + 0.05;
    [0, 0.25, 0.5, 1.0, 1.25].forEach((off, i) => pulse(t + off, i < 3 ? 880 : 740, 0.16));
    count();
    return true;
  }

  async function enable() {
    const AC = window.AudioContext || window.webkitAudioContext;
    if (!AC) return false;
    ctx = ctx || new AC();
    await ctx.resume();
    enabled = true;
    pulse(ctx.currentTime + 0.05, 660, 0.12);  // a short confirmation that sound works
    return ctx.state === "running";
  }

  function disable() { enabled = false; }

  return { enable, disable, high, get enabled() { return enabled; } };
})();
