// npm's sampjs ends with `module.exports = { samp }` (for Node), which throws in a browser
// after `var samp` is defined.  This gives it a throwaway `module` for that one line;
// static/js/samp.js removes it again at once, so no other script sees a CommonJS global.
"use strict";
if (typeof window.module === "undefined") window.module = { exports: {}, __lsShim: true };
