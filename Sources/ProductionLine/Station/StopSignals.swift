import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// SIGINT and SIGTERM delivered to `handler` (on a dispatch queue, not in signal context) instead
/// of ending the process, until ``cancel()``: how a station or a fleet stops in order (the
/// station: first signal graceful, second at once, see ``Station/requestStop(_:)``).
public final class StopSignals: @unchecked Sendable {
    private var sources: [DispatchSourceSignal] = []

    public init(_ handler: @escaping @Sendable () -> Void) {
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            s.setEventHandler(handler: handler)
            s.resume()
            sources.append(s)
        }
    }

    /// Stops watching (the signals stay ignored).
    public func cancel() {
        for s in sources { s.cancel() }
        sources = []
    }
}
