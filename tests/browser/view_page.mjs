// Opens vgpu-vnc's browser view in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core from web/node_modules) and saves what its canvas shows.
//
//   node tests/browser/view_page.mjs URL WIDTH HEIGHT CANVAS.png SCREENSHOT.png [--type TEXT] [--click X,Y]
//
// Waits until noVNC is connected and its canvas has the expected size and has stopped changing,
// then writes the canvas's pixels (PNG, from the canvas itself) and a screenshot of the page.
// With --type/--click, types the text and clicks the point (canvas pixels) into the page
// afterwards, as a person would. Prints one JSON line: state, sizes, resizes seen, timings.
import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '..', '..', 'web', 'package.json'));
const { chromium } = require('playwright-core');

const [url, width, height, canvasPath, shotPath, ...rest] = process.argv.slice(2);
const options = {};
for (let i = 0; i < rest.length; i += 2)
    options[rest[i].replace(/^--/, '')] = rest[i + 1];

const started = Date.now();
const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let result = { ok: false };
try {
    const page = await browser.newPage({ viewport: { width: Number(width) + 40, height: Number(height) + 80 } });
    const messages = [];
    page.on('console', (m) => messages.push(m.text()));
    page.on('pageerror', (e) => messages.push('pageerror: ' + e.message));
    await page.goto(url);
    await page.waitForFunction(([w, h]) => window.vgpu && window.vgpu.state === 'connected'
        && window.vgpu.width === w && window.vgpu.height === h, [Number(width), Number(height)],
        { timeout: 30000 });
    // The picture is there once two reads a moment apart agree (JPEG rectangles decode
    // asynchronously).
    const pixels = async () => page.evaluate(() => {
        const canvas = document.querySelector('#screen canvas');
        return canvas.toDataURL('image/png');
    });
    let last = await pixels();
    for (let i = 0; i < 50; i++) {
        await page.waitForTimeout(200);
        const now = await pixels();
        if (now === last && i > 2)
            break;
        last = now;
    }
    writeFileSync(canvasPath, Buffer.from(last.split(',')[1], 'base64'));
    await page.screenshot({ path: shotPath });
    if (options.type) {
        await page.click('#screen canvas', { position: { x: 5, y: 5 } });
        await page.keyboard.type(options.type, { delay: 50 });
    }
    if (options.click) {
        const [x, y] = options.click.split(',').map(Number);
        await page.click('#screen canvas', { position: { x, y } });
    }
    const state = await page.evaluate(() => ({ state: vgpu.state, width: vgpu.width, height: vgpu.height,
        resizes: vgpu.resizes, name: vgpu.name }));
    result = { ok: true, ...state, seconds: (Date.now() - started) / 1000, messages };
} catch (e) {
    result = { ok: false, error: String(e), seconds: (Date.now() - started) / 1000 };
} finally {
    await browser.close();
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
