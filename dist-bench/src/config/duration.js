/**
 * Durations in the configuration: a number of seconds (`30`, `0.5`) or a
 * string of one or more `<number><unit>` parts (`500ms`, `30s`, `10m`, `1h`,
 * `1h30m`, `1d`). Parsed values are integer milliseconds.
 */
import { z } from 'zod';
const UNIT_MS = {
    ms: 1,
    s: 1_000,
    m: 60_000,
    h: 3_600_000,
    d: 86_400_000,
};
const PART = /(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d)/gy;
/** Largest accepted duration: setTimeout's limit (about 24.8 days). */
export const MAX_DURATION_MS = 2_147_483_647;
/**
 * Parses a duration. Numbers are seconds; strings need a unit on every part
 * (a bare numeric string such as "30" is also taken as seconds).
 */
export function parseDuration(value) {
    if (typeof value === 'number') {
        if (!Number.isFinite(value) || value < 0) {
            return { ok: false, message: 'duration must be a non-negative number of seconds' };
        }
        return checkRange(Math.round(value * 1000));
    }
    if (typeof value !== 'string') {
        return {
            ok: false,
            message: `expected duration (number of seconds or a string like "30s"), got ${typeName(value)}`,
        };
    }
    const text = value.trim();
    if (/^\d+(?:\.\d+)?$/.test(text))
        return checkRange(Math.round(Number(text) * 1000));
    if (text === '')
        return { ok: false, message: 'duration must not be empty' };
    let total = 0;
    PART.lastIndex = 0;
    let index = 0;
    while (index < text.length) {
        PART.lastIndex = index;
        const m = PART.exec(text);
        if (!m) {
            return {
                ok: false,
                message: 'invalid duration: use a number of seconds or <number><unit> with unit ms, s, m, h or d (e.g. "500ms", "30s", "10m", "1h")',
            };
        }
        total += Number(m[1]) * UNIT_MS[m[2]];
        index = PART.lastIndex;
        while (text[index] === ' ')
            index += 1;
    }
    return checkRange(Math.round(total));
}
function checkRange(ms) {
    if (ms > MAX_DURATION_MS)
        return { ok: false, message: 'duration too long (maximum is about 24 days)' };
    return { ok: true, ms };
}
/** Formats milliseconds for messages: `600000` → `10m`, `1500` → `1500ms`. */
export function formatDuration(ms) {
    for (const unit of ['d', 'h', 'm', 's']) {
        const size = UNIT_MS[unit];
        if (ms >= size && ms % size === 0)
            return `${ms / size}${unit}`;
    }
    return `${ms}ms`;
}
/**
 * A zod schema for a duration field: accepts seconds or a duration string,
 * outputs integer milliseconds, and checks bounds.
 */
export function duration(bounds = {}) {
    return z.custom(() => true).transform((value, ctx) => {
        const parsed = parseDuration(value);
        if (!parsed.ok) {
            ctx.issues.push({ code: 'custom', message: parsed.message, input: undefined });
            return z.NEVER;
        }
        if (bounds.min !== undefined && parsed.ms < bounds.min) {
            ctx.issues.push({
                code: 'custom',
                message: `must be at least ${formatDuration(bounds.min)}`,
                input: undefined,
                ...(bounds.minHint ? { params: { hint: bounds.minHint } } : {}),
            });
            return z.NEVER;
        }
        if (bounds.max !== undefined && parsed.ms > bounds.max) {
            ctx.issues.push({ code: 'custom', message: `must be at most ${formatDuration(bounds.max)}`, input: undefined });
            return z.NEVER;
        }
        return parsed.ms;
    });
}
/** `typeof`, but with `null` and `array` told apart; never reveals the value. */
export function typeName(value) {
    if (value === null)
        return 'null';
    if (Array.isArray(value))
        return 'array';
    return typeof value;
}
//# sourceMappingURL=duration.js.map