package bayeux

// Transport names, as they appear on the wire in supportedConnectionTypes and
// connectionType. Every package that names a transport uses these.
const (
	TransportWebSocket       = "websocket"
	TransportLongPolling     = "long-polling"
	TransportCallbackPolling = "callback-polling"
	// TransportCrossOriginLongPolling is long-polling from a page on another
	// origin (CORS), under the name the Faye browser client gives it.
	TransportCrossOriginLongPolling = "cross-origin-long-polling"
	// TransportEventSource is Faye's Server-Sent Events transport: messages
	// are delivered on an EventSource stream at <mount>/<clientId>, and the
	// client sends its own by POST, as with long-polling.
	TransportEventSource = "eventsource"
)

// Transports lists every transport name a broker can serve.
var Transports = []string{
	TransportWebSocket, TransportLongPolling, TransportCallbackPolling,
	TransportCrossOriginLongPolling, TransportEventSource,
}

// IsTransport reports whether name is one of Transports.
func IsTransport(name string) bool {
	for _, t := range Transports {
		if t == name {
			return true
		}
	}
	return false
}
