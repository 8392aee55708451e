import ESPCore
import Foundation
import Hummingbird
import ProductionLine
import Provisioning
import Registry

/// Where and how the dashboard listens.
public struct DashboardConfig: Sendable {
    public var host: String
    public var port: Int
    /// Bearer token; required for any address but loopback.
    public var token: String?

    public init(host: String = "127.0.0.1", port: Int = 8080, token: String? = nil) {
        self.host = host; self.port = port; self.token = token
    }

    /// `HOST:PORT` (port 0 picks a free one).
    public static func parse(_ text: String, token: String?) throws -> DashboardConfig {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            throw UsageError("--dashboard '\(text)' is not HOST:PORT", hint: "e.g. --dashboard 127.0.0.1:8080")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { throw UsageError("--dashboard '\(text)' has no host", hint: "e.g. --dashboard 127.0.0.1:8080") }
        let config = DashboardConfig(host: host, port: port, token: token)
        if !config.isLoopback, (token ?? "").isEmpty {
            throw UsageError("the dashboard on \(host) would be reachable from other machines without a token",
                             hint: "give --dashboard-token-file FILE (a bearer token), or bind 127.0.0.1")
        }
        return config
    }

    public var isLoopback: Bool { host == "127.0.0.1" || host == "localhost" || host == "::1" }
}

/// The station's read-only web dashboard: per-slot tiles updated live (Server-Sent Events),
/// shift counters, the failure list with the doctor's diagnoses, a device page and registry
/// search, `/api/...` JSON for all of it, `/metrics` (Prometheus text) and `/healthz`.
///
/// Nothing here changes the line: every route is a GET. Key material is never shown: the
/// registry holds digests and key ids only, and device pages show exactly those.
public final class StationDashboard: Sendable {
    public let station: Station
    public let registry: (any DeviceRegistry)?
    public let config: DashboardConfig
    let metrics: StepMetrics

    public init(station: Station, registry: (any DeviceRegistry)?, config: DashboardConfig) {
        self.station = station
        self.registry = registry
        self.config = config
        metrics = StepMetrics()
        let metrics = self.metrics
        station.addObserver { metrics.observe($0) }
    }

    /// Serves until the task is cancelled. `onRunning` gets the bound port.
    public func run(onRunning: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        let app = Application(router: router(), configuration: .init(address: .hostname(config.host, port: config.port),
                                                                      serverName: "espforge-station"),
                              onServerRunning: { channel in onRunning(channel.localAddress?.port ?? 0) })
        try await app.runService(gracefulShutdownSignals: [])
    }

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: BearerTokenMiddleware(token: config.token))
        router.get("/healthz") { _, _ in Self.text("ok\n") }
        router.get("/") { _, _ in Self.response(Array(DashboardPage.html.utf8), type: "text/html; charset=utf-8") }
        router.get("/api/station") { [station] _, _ in try Self.json(station.snapshot()) }
        router.get("/api/slots") { [station] _, _ in try Self.json(station.snapshot().slots) }
        router.get("/api/results") { [station] _, _ in try Self.json(station.snapshot().recent) }
        router.get("/api/failures") { [station] _, _ in
            try Self.json(station.snapshot().recent.filter { $0.result.outcome == .failed })
        }
        router.get("/api/line") { [registry] _, _ in
            guard let registry else { return Self.text("no registry\n", status: .notFound) }
            return try Self.json(LineCounters(try await registry.devices()))
        }
        router.get("/api/devices/:mac") { [registry] _, context in
            guard let registry, let raw = context.parameters.get("mac") else { return Self.text("no registry\n", status: .notFound) }
            // The page asks with encodeURIComponent (colons as %3A); any MAC spelling the registry
            // accepts works, anything else is the client's mistake, not a server error.
            let mac = (raw.removingPercentEncoding ?? raw).lowercased()
            let record: DeviceRecord?
            do { record = try await registry.device(mac: mac) } catch let e as RegistryError {
                guard case .badMAC = e else { throw e }
                return Self.text("not a MAC address: \(Diagnostic.terminalSafe(mac)) (give six hex bytes, e.g. 24:0a:c4:00:00:01)\n", status: .badRequest)
            }
            guard let record else {
                // A board another line secured is refused at identify and gets no device record
                // (it is not this line's device), only events: say what they were.
                let events = try await registry.events(mac: mac)
                let said = events.suffix(5).map {
                    Diagnostic.terminalSafe("\($0.at) \($0.kind)\($0.station.map { " at " + $0 } ?? ""): \($0.detail ?? "")")
                }
                return Self.text("no device \(Diagnostic.terminalSafe(mac)) in the registry"
                                 + (said.isEmpty ? "" : "; its events:\n" + said.joined(separator: "\n")) + "\n", status: .notFound)
            }
            return try Self.json(DevicePage(record: record, steps: try await registry.steps(mac: record.mac),
                                            events: try await registry.events(mac: record.mac)))
        }
        router.get("/api/search") { [registry] request, _ in
            guard let registry else { return Self.text("no registry\n", status: .notFound) }
            let q = (request.uri.queryParameters.get("q") ?? "").lowercased()
            guard !q.isEmpty else { return Self.text("give ?q=MAC or identity\n", status: .badRequest) }
            let found = try await registry.devices().filter { $0.mac.contains(q) || ($0.identity?.lowercased().contains(q) ?? false) }
            return try Self.json(found.prefix(100).map(DeviceSummary.init))
        }
        router.get("/metrics") { [station, metrics] _, _ in
            Self.response(Array(PrometheusText.render(station.snapshot(), metrics: metrics).utf8),
                          type: "text/plain; version=0.0.4; charset=utf-8")
        }
        router.get("/events") { [station] _, _ in
            let stream = Self.eventStream(station)
            return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                            body: ResponseBody(asyncSequence: stream))
        }
        return router
    }

    /// The first message is the whole snapshot; then every station event, and a snapshot every
    /// 2 s (elapsed times, boards/hour) until the client goes.
    static func eventStream(_ station: Station) -> AsyncStream<ByteBuffer> {
        AsyncStream { continuation in
            let encoder = Self.encoder
            @Sendable func send(_ name: String, _ data: Data) {
                continuation.yield(ByteBuffer(string: "event: \(name)\ndata: " + String(decoding: data, as: UTF8.self) + "\n\n"))
            }
            if let data = try? encoder.encode(station.snapshot()) { send("snapshot", data) }
            let id = station.addObserver { e in
                if let data = try? encoder.encode(e) { send("station", data) }
            }
            let ticker = Task {
                while !Task.isCancelled {
                    try? await Task.sleep(nanoseconds: 2_000_000_000)
                    if let data = try? encoder.encode(station.snapshot()) { send("snapshot", data) }
                }
            }
            continuation.onTermination = { _ in
                station.removeObserver(id)
                ticker.cancel()
            }
        }
    }

    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        e.dateEncodingStrategy = .iso8601
        return e
    }()

    static func json<T: Encodable>(_ value: T) throws -> Response {
        response(Array(try encoder.encode(value)), type: "application/json")
    }

    static func text(_ s: String, status: HTTPResponse.Status = .ok) -> Response {
        response(Array(s.utf8), type: "text/plain; charset=utf-8", status: status)
    }

    static func response(_ bytes: [UInt8], type: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: type, .cacheControl: "no-store"],
                 body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}

/// Every request must carry `Authorization: Bearer TOKEN` when a token is set (the page itself
/// may also be opened as `/?token=TOKEN`; it then sends the header on its own requests).
struct BearerTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: String?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let token, !token.isEmpty else { return try await next(request, context) }
        var given: String?
        if let header = request.headers[.authorization], header.hasPrefix("Bearer ") {
            given = String(header.dropFirst("Bearer ".count))
        } else if request.uri.path == "/" {
            given = request.uri.queryParameters.get("token")
        }
        guard let given, Self.equal(Array(given.utf8), Array(token.utf8)) else {
            return Response(status: .unauthorized, headers: [.wwwAuthenticate: "Bearer", .contentType: "text/plain"],
                            body: ResponseBody(byteBuffer: ByteBuffer(string: "a bearer token is required\n")))
        }
        return try await next(request, context)
    }

    /// Constant-time comparison.
    static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in a.indices { diff |= a[i] ^ b[i] }
        return diff == 0
    }
}

/// The whole line's counters from the shared registry (every station).
struct LineCounters: Encodable {
    var byStatus: [String: Int] = [:]
    var byStation: [String: [String: Int]] = [:]
    var total = 0
    init(_ devices: [DeviceRecord]) {
        for d in devices {
            byStatus[d.status.rawValue, default: 0] += 1
            byStation[d.facts.station ?? "-", default: [:]][d.status.rawValue, default: 0] += 1
        }
        total = devices.count
    }
    enum CodingKeys: String, CodingKey { case byStatus = "by_status", byStation = "by_station", total }
}

/// One registry row in a search result.
struct DeviceSummary: Encodable {
    var mac: String, status: String, identity: String?, station: String?, updatedAt: String, failure: String?
    init(_ r: DeviceRecord) {
        mac = r.mac; status = r.status.rawValue; identity = r.identity; station = r.facts.station
        updatedAt = r.updatedAt; failure = r.failure
    }
}

/// A device page: identity, steps with timings, eFuse summary read back, image hashes, key
/// digests and key ids (never key material), events.
struct DevicePage: Encodable {
    var device: DeviceSummary
    var chip: String, chipRevision: Int?, flashSize: Int?, flashID: String?, manifestHash: String?
    var imageHashes: [String: String], keyDigests: [String: String], keyIDs: [String: String]
    var efuseSummary: [String: String]?
    var steps: [Step]
    var events: [Event]
    struct Step: Encodable { var step: String, outcome: String, startedAt: String, finishedAt: String?, detail: String? }
    struct Event: Encodable { var at: String, kind: String, station: String?, detail: String? }

    init(record r: DeviceRecord, steps: [StepRecord], events: [RegistryEvent]) {
        device = DeviceSummary(r)
        chip = r.facts.chip; chipRevision = r.facts.chipRevision; flashSize = r.facts.flashSize; flashID = r.facts.flashID
        manifestHash = r.facts.manifestHash
        imageHashes = r.facts.imageHashes; keyDigests = r.facts.keyDigests; keyIDs = r.facts.keyIDs
        efuseSummary = r.efuseSummary
        self.steps = steps.map { Step(step: $0.step, outcome: $0.outcome.rawValue, startedAt: $0.startedAt, finishedAt: $0.finishedAt, detail: $0.detail) }
        self.events = events.map { Event(at: $0.at, kind: $0.kind, station: $0.station, detail: $0.detail) }
    }
}
