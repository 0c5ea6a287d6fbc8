// Cheap cookie lookup for the hot path: scan the raw Cookie header for `name=` without building a
// map or splitting the header. Only the one value asked for is sliced out.

function isSeparator(code: number): boolean {
  return code === 59 /* ; */ || code === 32 /* space */ || code === 9 /* tab */ || code === 44 /* , (RFC 2965 folding) */;
}

/** Value of cookie `name` in a raw Cookie header, or undefined. `name` must not contain "=". */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined || header.length === 0) return undefined;
  const nlen = name.length;
  let from = 0;
  for (;;) {
    const i = header.indexOf(name, from);
    if (i === -1) return undefined;
    const eq = i + nlen;
    // Must start a cookie pair (start of header or after a separator) and be followed by "=",
    // so "xsession=" does not match "session".
    if ((i === 0 || isSeparator(header.charCodeAt(i - 1))) && header.charCodeAt(eq) === 61 /* = */) {
      let end = header.indexOf(';', eq + 1);
      if (end === -1) end = header.length;
      let start = eq + 1;
      while (end > start && (header.charCodeAt(end - 1) === 32 || header.charCodeAt(end - 1) === 9)) end--;
      while (start < end && (header.charCodeAt(start) === 32 || header.charCodeAt(start) === 9)) start++;
      if (end - start >= 2 && header.charCodeAt(start) === 34 && header.charCodeAt(end - 1) === 34) {
        start++;
        end--;
      }
      return header.slice(start, end);
    }
    from = i + 1;
  }
}

/** GRADUAL bucket from a cookie value: an integer 0..99, else -1. No allocation. */
export function parseBucket(value: string | undefined): number {
  if (value === undefined) return -1;
  const len = value.length;
  if (len === 0 || len > 2) return -1;
  let n = 0;
  for (let i = 0; i < len; i++) {
    const c = value.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return -1;
    n = n * 10 + c;
  }
  return n;
}
