// A stand-in for the DOM <script> element, so the CometD client's
// callback-polling transport runs in Node: appending a script element performs a
// GET of its src and evaluates the response, a call of the jsonp callback.
//
// The callback is looked up when the element is appended, not when the response
// arrives: two CometD clients in one process each number their callbacks from 0,
// so a later client may reuse a name before an earlier response comes back.
export function installScriptShim(window) {
    const head = {
        appendChild(script) {
            const name = new URL(script.src).searchParams.get("jsonp");
            const callback = window[name];
            fetch(script.src, {headers: {"Accept": "text/javascript"}})
                .then(async (res) => {
                    if (!res.ok) {
                        throw new Error("HTTP " + res.status);
                    }
                    const type = res.headers.get("content-type") || "";
                    if (!type.startsWith("text/javascript")) {
                        throw new Error("content-type " + type);
                    }
                    const body = await res.text();
                    // The body is "<name>([...]);": run it with name bound to the callback.
                    new Function(name, body)(callback);
                })
                .catch((e) => {
                    if (process.env.SHIM_DEBUG) {
                        console.error("script shim:", e);
                    }
                    if (script.onerror) {
                        script.onerror({type: "error", error: e});
                    }
                });
        },
        removeChild() {},
    };
    window.document = {
        getElementsByTagName(name) {
            return name === "head" ? [head] : [];
        },
        createElement() {
            return {};
        },
    };
}
