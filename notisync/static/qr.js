// A QR code of a new API key, so a phone can scan it instead of typing 40
// characters. Drawn as SVG elements made here (no markup strings, no data:
// URLs: the page's Content-Security-Policy stays strict), one path for all the
// dark modules, dark on light whatever the page's colour scheme (scanners
// expect that), with the standard four-module quiet zone.

import qrcode from './vendor/qrcode-generator.js';

const SVG = 'http://www.w3.org/2000/svg';
const QUIET = 4;

/** An <svg> showing `text` as a QR code (error correction M), labelled for screen readers. */
export function qrSvg(text, label) {
  const qr = qrcode(0, 'M'); // 0: the smallest version that fits
  qr.addData(text);
  qr.make();
  const n = qr.getModuleCount();
  const size = n + 2 * QUIET;
  let d = '';
  for (let r = 0; r < n; r += 1) {
    for (let c = 0; c < n; c += 1) {
      if (qr.isDark(r, c)) d += `M${c + QUIET} ${r + QUIET}h1v1h-1z`;
    }
  }
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${size} ${size}`);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
  svg.setAttribute('shape-rendering', 'crispEdges');
  svg.dataset.modules = String(n);
  const back = document.createElementNS(SVG, 'rect');
  back.setAttribute('width', String(size));
  back.setAttribute('height', String(size));
  back.setAttribute('fill', '#fff');
  const dark = document.createElementNS(SVG, 'path');
  dark.setAttribute('d', d);
  dark.setAttribute('fill', '#000');
  svg.append(back, dark);
  return svg;
}
