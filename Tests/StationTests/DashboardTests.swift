import Foundation
import Registry
import Testing
import TestSupport
@testable import ProductionLine
@testable import Provisioning
@testable import StationDashboard

/// The dashboard served for real on loopback and read with a plain HTTP/1.1 client over a socket.
@Suite("Station dashboard over HTTP", .serialized)
struct DashboardTests {
    /// A minimal HTTP/1.1 GET; returns status, headers and as much body as arrives within `wait`
    /// (the event stream never ends).
    static func get(_ port: Int, _ path: String, method: String = "GET", headers: [String: String] = [:], wait: Double = 30,
                    until: ((String) -> Bool)? = nil) throws -> (status: Int, head: String, body: String) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else { throw TestSupportError.missing("a listener on 127.0.0.1:\(port)") }
        var request = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        if method != "GET" { request += "Content-Length: 0\r\n" }
        for (k, v) in headers { request += "\(k): \(v)\r\n" }
        request += "\r\n"
        _ = request.withCString { write(fd, $0, strlen($0)) }
        var data: [UInt8] = []
        let end = Date().addingTimeInterval(wait)
        var buf = [UInt8](repeating: 0, count: 65536)
        while Date() < end {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 100) > 0 else { continue }
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            data += buf[0..<n]
            if let until, until(String(decoding: data, as: UTF8.self)) { break }
        }
        let text = String(decoding: data, as: UTF8.self)
        let parts = text.components(separatedBy: "\r\n\r\n")
        let head = parts.first ?? ""
        let status = Int(head.split(separator: " ").dropFirst().first ?? "") ?? 0
        return (status, head, parts.dropFirst().joined(separator: "\r\n\r\n"))
    }

    /// ``get(_:_:method:headers:wait:until:)`` on a thread of its own: the client blocks in
    /// poll/read, and Swift's cooperative pool (one thread per core) must stay free for the server.
    static func fetch(_ port: Int, _ path: String, method: String = "GET", headers: [String: String] = [:], wait: Double = 30,
                      until: (@Sendable (String) -> Bool)? = nil) async throws -> (status: Int, head: String, body: String) {
        try await offPool { try get(port, path, method: method, headers: headers, wait: wait, until: until) }
    }

    /// A station with two empty slots (nothing listens on their ports), not running: its
    /// snapshot is what the dashboard shows.
    func station(_ dir: URL) async throws -> (Station, any DeviceRegistry) {
        let registry = try await openRegistry(url: dir.appendingPathComponent("r.sqlite").path)
        let job = ProvisioningJob(images: [], partitionTableOffset: 0x8000, partitions: [], mode: .none, release: false,
                                  manifestHash: "m", secureBootDigest: nil, identityPool: "p", identities: [], nvsPartition: "nvs",
                                  nvsKeysPartition: nil, encryptNVS: false, finalBurn: [], finalWriteProtect: [], minRevision: nil,
                                  flashSize: 4 << 20, station: "L1")
        let provisioner = Provisioner(job: job, registry: registry, sdkconfig: .init())
        let s = Station(slots: [StationSlot(name: "A1", port: "socket://127.0.0.1:9"), StationSlot(name: "A2", port: "socket://127.0.0.1:9")],
                        provisioner: provisioner, options: Station.Options(link: LoaderLinkOptions()), stationName: "L1")
        return (s, registry)
    }

    func serve(_ board: StationDashboard) async throws -> (Task<Void, Never>, Int) {
        let port = PortBox()
        let task = Task { _ = try? await board.run { port.set($0) } }
        for _ in 0..<1200 where port.get() == 0 { try await Task.sleep(nanoseconds: 25_000_000) }   // up to 30 s on a loaded machine
        try #require(port.get() > 0, "the dashboard is listening")
        return (task, port.get())
    }

    @Test("loopback without a token: healthz, JSON API, Prometheus metrics, the page, and the event stream's first snapshot; no write routes")
    func loopback() async throws {
        let dir = try TestEnvironment.temporaryDirectory("espforge-dash")
        defer { try? FileManager.default.removeItem(at: dir) }
        let (s, registry) = try await station(dir)
        let (task, port) = try await serve(StationDashboard(station: s, registry: registry, config: DashboardConfig(host: "127.0.0.1", port: 0)))
        defer { task.cancel() }

        let health = try await Self.fetch(port, "/healthz")
        #expect(health.status == 200 && health.body.contains("ok"))
        let api = try await Self.fetch(port, "/api/station")
        #expect(api.status == 200 && api.head.lowercased().contains("application/json"))
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(api.body.utf8)) as? [String: Any], "\(api.body)")
        let slots = try #require(obj["slots"] as? [[String: Any]])
        #expect(slots.map { $0["name"] as? String } == ["A1", "A2"] && slots.allSatisfy { $0["phase"] as? String == "waiting" })
        #expect(obj["station"] as? String == "L1")
        let metrics = try await Self.fetch(port, "/metrics")
        #expect(metrics.status == 200 && metrics.head.contains("text/plain"))
        #expect(metrics.body.contains("espforge_station_boards_total{result=\"passed\"} 0"))
        #expect(metrics.body.contains("espforge_station_slot_state{slot=\"A1\",state=\"waiting\"} 1"))
        #expect(metrics.body.contains("# TYPE espforge_station_step_duration_seconds histogram"))
        let page = try await Self.fetch(port, "/")
        #expect(page.status == 200 && page.body.contains("<title>espforge station</title>"))
        let events = try await Self.fetch(port, "/events", wait: 5) { $0.contains("event: snapshot") && $0.contains("\n\n") }
        #expect(events.status == 200 && events.head.contains("text/event-stream"), "\(events.head)")
        #expect(events.body.contains("event: snapshot") && events.body.contains("\"A2\""), "\(events.body)")
        let line = try await Self.fetch(port, "/api/line")
        #expect(line.status == 200 && line.body.contains("\"total\":0"))
        let missing = try await Self.fetch(port, "/api/devices/24:0a:c4:00:00:01")
        #expect(missing.status == 404)
        // As the page asks (encodeURIComponent): the same answer, not a server error.
        let encoded = try await Self.fetch(port, "/api/devices/24%3A0a%3Ac4%3A00%3A00%3A01")
        #expect(encoded.status == 404, "\(encoded.head)")
        // Another line's board: refused at identify, no device record, but its events are shown.
        try await registry.recordEvent(mac: "24:0a:c4:00:00:02", kind: "refused", station: "L1",
                                       detail: "the chip is already secured \u{1b}[31m and the registry does not know it")
        let foreign = try await Self.fetch(port, "/api/devices/24:0a:c4:00:00:02")
        #expect(foreign.status == 404 && foreign.body.contains("its events:") && foreign.body.contains("refused at L1")
                && foreign.body.contains("already secured") && !foreign.body.contains("\u{1b}"), "\(foreign.body)")
        let malformed = try await Self.fetch(port, "/api/devices/zz")
        #expect(malformed.status == 400 && malformed.body.contains("not a MAC address"), "\(malformed.head)\n\(malformed.body)")
        // Read-only: no route takes a write.
        for (method, path) in [("POST", "/api/station"), ("PUT", "/api/devices/24:0a:c4:00:00:01"), ("DELETE", "/api/slots")] {
            let w = try await Self.fetch(port, path, method: method, wait: 2)
            #expect(w.status == 404 || w.status == 405, "\(method) \(path): \(w.head)")
        }
        try await registry.close()
    }

    @Test("a token: every route, the event stream included, needs `Authorization: Bearer`; the page also takes ?token=")
    func token() async throws {
        let dir = try TestEnvironment.temporaryDirectory("espforge-dash-token")
        defer { try? FileManager.default.removeItem(at: dir) }
        let (s, registry) = try await station(dir)
        let secret = "0123456789abcdef0123456789abcdef"
        let (task, port) = try await serve(StationDashboard(station: s, registry: registry, config: DashboardConfig(host: "127.0.0.1", port: 0, token: secret)))
        defer { task.cancel() }
        for path in ["/healthz", "/api/station", "/metrics", "/events", "/", "/api/search?q=24"] {
            let r = try await Self.fetch(port, path, wait: 2)
            #expect(r.status == 401, "\(path) without a token: \(r.head)")
            let wrong = try await Self.fetch(port, path, headers: ["Authorization": "Bearer nope"], wait: 2)
            #expect(wrong.status == 401, "\(path) with a wrong token")
        }
        #expect(try await Self.fetch(port, "/api/station", headers: ["Authorization": "Bearer " + secret]).status == 200)
        let ev = try await Self.fetch(port, "/events", headers: ["Authorization": "Bearer " + secret], wait: 5) { $0.contains("event: snapshot") }
        #expect(ev.status == 200)
        #expect(try await Self.fetch(port, "/?token=" + secret).status == 200)
        #expect(try await Self.fetch(port, "/api/station?token=" + secret, wait: 2).status == 401, "the query token is for the page only")
        try await registry.close()
    }

    @Test("binding beyond loopback needs a token")
    func nonLoopback() throws {
        #expect(throws: (any Error).self) { try DashboardConfig.parse("0.0.0.0:8080", token: nil) }
        #expect(try DashboardConfig.parse("0.0.0.0:8080", token: "0123456789abcdef").token != nil)
        #expect(try DashboardConfig.parse("127.0.0.1:0", token: nil).isLoopback)
        #expect(throws: (any Error).self) { try DashboardConfig.parse("127.0.0.1", token: nil) }
    }
}

/// Runs blocking work on a new thread and awaits it.
func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { c in
        let t = Thread { c.resume(with: Result { try body() }) }
        t.start()
    }
}

final class PortBox: @unchecked Sendable {
    private let lock = NSLock()
    private var port = 0
    func set(_ p: Int) { lock.withLock { port = p } }
    func get() -> Int { lock.withLock { port } }
}
