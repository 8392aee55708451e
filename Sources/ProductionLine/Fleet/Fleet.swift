import BootSimulator
import EFuse
import ESPCore
import FlashEncryption
import Foundation
import VirtualDevice
#if canImport(Glibc)
import Glibc
#endif

/// What is wrong with a board of the fleet (each a failure seen on real lines).
public enum BoardDefect: String, Sendable, Codable, CaseIterable {
    /// The seed's failure: the bootloader's header bytes rewritten after signing (esptool's
    /// write-time --flash-size), so the ROM rejects it at the first boot.
    case reheadered
    /// A 2 MB flash chip on a line whose manifest needs 4 MB.
    case flash2MB = "flash-2mb"
    /// An ESP32 v1 (Secure Boot V2 needs v3).
    case oldRevision = "old-revision"
    /// Already secured by another line (ABS_DONE_1 and a foreign key digest in BLOCK2).
    case secured
    /// A noisy link (lost and flipped bytes, stalls): the line must still provision it.
    case flaky
    /// Pulled out of the slot while its flash is being written.
    case pulled

    /// Does a correct line still provision such a board?
    public var provisionable: Bool { self == .flaky }

    /// Parses `N` (N defective boards, kinds spread over the failing kinds) or
    /// `kind=N,kind=N` (e.g. `reheadered=1,secured=2`).
    public static func parse(_ spec: String) throws -> [BoardDefect] {
        if let n = Int(spec) {
            guard n >= 0 else { throw UsageError("--defects \(spec): a count must be 0 or more") }
            let failing = allCases.filter { !$0.provisionable }
            return (0..<n).map { failing[$0 % failing.count] }
        }
        var out: [BoardDefect] = []
        for item in spec.split(separator: ",") {
            let kv = item.split(separator: "=", maxSplits: 1).map(String.init)
            guard let kind = BoardDefect(rawValue: kv[0]) else {
                throw UsageError("--defects: '\(kv[0])' is not a defect",
                                 hint: "use a count, or kind=N with kinds " + allCases.map(\.rawValue).joined(separator: ", "))
            }
            let n = kv.count == 2 ? Int(kv[1]) : 1
            guard let n, n >= 0 else { throw UsageError("--defects: '\(item)' needs a count, e.g. \(kind.rawValue)=2") }
            out += Array(repeating: kind, count: n)
        }
        return out
    }
}

/// A fleet of virtual boards for a station: `slots` socket:// slots on loopback; boards (each a
/// fresh virtual ESP32 with its own MAC) are put in and taken out as an operator would.
public struct FleetPlan: Sendable {
    public var directory: String
    public var slots: Int
    public var boards: Int
    /// One entry per defective board.
    public var defects: [BoardDefect] = []
    public var seed: UInt64 = 1
    /// Serve at the speed of a real chip (each served device sleeps its virtual time).
    public var realtime = false
    /// sdkconfig text every board remembers (its first boot runs the simulator under it).
    public var sdkconfig: String?
    /// The link faults of `flaky` boards.
    public var flakyFaults = "drop=0.00002,flip=0.00002,stall=0.01:30"
    /// `pulled` boards lose their link after this many bytes went over it (during the write).
    public var pullAfterBytes = 40_000
    /// Seconds the operator takes to pull a board once the station shows its result.
    public var dwell = 0.3
    /// A board the station worked on and then left alone this long is taken out anyway (a
    /// station that stopped).
    public var idleAfterWork = 20.0
    /// Seconds an operator needs to put the next board in.
    public var handling: ClosedRange<Double> = 0.1...0.4
    /// A board still in its slot after this long is taken out anyway.
    public var maxBoardSeconds = 900.0
    public init(directory: String, slots: Int, boards: Int) {
        self.directory = directory; self.slots = slots; self.boards = boards
    }
}

/// One board of the fleet: where it went and what should become of it (the truth a station's
/// records are checked against).
public struct FleetBoard: Sendable, Codable, Equatable {
    public var index: Int
    public var slot: Int
    public var port: String
    public var mac: String
    public var defect: BoardDefect?
    /// `provisioned` or `failed`.
    public var expected: String
    public var folder: String
    public var inserted: Date?
    public var removed: Date?
    /// Client connections the board served, and why it was taken out (`done`, `pulled`, `timeout`, `stopped`).
    public var sessions = 0
    public var removal: String?
}

/// The fleet's record at the end.
public struct FleetTruth: Sendable, Codable {
    public var slots: [String]
    public var boards: [FleetBoard]
    public var seed: UInt64
    public var realtime: Bool
    public var started: Date
    public var ended: Date
}

/// Serves a ``FleetPlan``: one thread per slot (plain threads: everything here blocks).
public final class BoardFleet: @unchecked Sendable {
    public let plan: FleetPlan
    private let lock = NSLock()
    private var boards: [FleetBoard] = []
    private var ports: [Int] = []
    private var threads: [Thread] = []
    private var stopping = false
    private let finished = DispatchGroup()
    private var started = Date()

    public init(plan: FleetPlan) throws {
        guard plan.slots >= 1, plan.slots <= 64 else { throw UsageError("--slots must be 1…64") }
        guard plan.boards >= 1, plan.boards <= 10_000 else { throw UsageError("--boards must be 1…10000") }
        guard plan.defects.count <= plan.boards else {
            throw UsageError("--defects asks for \(plan.defects.count) defective boards out of \(plan.boards)")
        }
        if plan.defects.contains(.flaky) { _ = try FaultPlan(spec: plan.flakyFaults) }
        self.plan = plan
    }

    /// Picks free loopback ports for the slots, lays the boards out and starts the operators.
    /// Returns the slots' `socket://` URLs (the slots are empty until their first board is in).
    public func start() throws -> [String] {
        try FileManager.default.createDirectory(atPath: plan.directory + "/boards", withIntermediateDirectories: true)
        for _ in 0..<plan.slots {
            let (fd, port) = try DeviceServer.listen(host: "127.0.0.1", port: 0)
            close(fd)
            ports.append(port)
        }
        var rng = SplitMix64(seed: plan.seed)
        // Which boards are defective: a seeded shuffle of the board indices.
        var order = Array(0..<plan.boards)
        for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        var defectOf: [Int: BoardDefect] = [:]
        for (k, d) in plan.defects.enumerated() { defectOf[order[k]] = d }
        for i in 0..<plan.boards {
            let slot = i % plan.slots
            let mac = Self.mac(seed: plan.seed, index: i)
            let defect = defectOf[i]
            boards.append(FleetBoard(index: i, slot: slot, port: url(slot), mac: mac, defect: defect,
                                     expected: defect.map { $0.provisionable ? "provisioned" : "failed" } ?? "provisioned",
                                     folder: plan.directory + "/boards/b\(String(format: "%03d", i + 1))"))
        }
        started = Date()
        for slot in 0..<plan.slots {
            finished.enter()
            let seed = plan.seed &+ UInt64(slot) &* 0x9E37_79B9
            let t = Thread { [self] in
                defer { finished.leave() }
                operate(slot: slot, seed: seed)
            }
            t.name = "fleet:\(slot + 1)"
            t.stackSize = 8 << 20
            threads.append(t)
            t.start()
        }
        return (0..<plan.slots).map(url)
    }

    /// Waits until every board went through its slot (or ``stop()``); returns the truth.
    public func wait() -> FleetTruth {
        finished.wait()
        return truth()
    }

    /// Takes no more boards; boards in slots are taken out after their current connection.
    public func stop() { lock.withLock { stopping = true } }

    public func truth() -> FleetTruth {
        lock.withLock {
            FleetTruth(slots: (0..<plan.slots).map(url), boards: boards, seed: plan.seed, realtime: plan.realtime,
                       started: started, ended: Date())
        }
    }

    func url(_ slot: Int) -> String { "socket://127.0.0.1:\(ports[slot])" }

    /// A locally administered-looking but Espressif-OUI MAC, distinct per board and seed.
    static func mac(seed: UInt64, index: Int) -> String {
        var r = SplitMix64(seed: seed &* 0x100000001B3 &+ UInt64(index))
        let v = r.next()
        let b = [0x24, 0x0A, 0xC4, Int((v >> 16) & 0xFF), Int((v >> 8) & 0xFF), index & 0xFF]
        return b.map { String(format: "%02x", $0) }.joined(separator: ":")
    }

    private var isStopping: Bool { lock.withLock { stopping } }

    // MARK: - one slot's operator

    private func operate(slot: Int, seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        let mine = lock.withLock { boards.filter { $0.slot == slot }.map(\.index) }
        for index in mine {
            let span = plan.handling.upperBound - plan.handling.lowerBound
            let pause = plan.handling.lowerBound + span * Double(rng.next() % 1000) / 1000
            usleep(useconds_t(pause * 1_000_000))
            if isStopping { break }
            do { try serve(board: index, slot: slot) } catch {
                lock.withLock { boards[index].removal = "error: \((error as? DiagnosticConvertible)?.diagnostic.message ?? "\(error)")" }
            }
        }
    }

    private func serve(board index: Int, slot: Int) throws {
        let b = lock.withLock { boards[index] }
        let store = DeviceStore(directory: b.folder)
        var description = DeviceDescription(mac: b.mac)
        if b.defect == .flash2MB {
            description.flashSize = 2 << 20
            description.flashID = (Device.jedecSizeCode(for: 2 << 20) << 16) | 0x40EF
        }
        if b.defect == .oldRevision { description.chipRevision = 1 }
        var device = try Device.create(description)
        if b.defect == .secured { Self.secureByAnotherLine(&device, seed: plan.seed &+ UInt64(index)) }
        try store.create(device, force: true)
        if let text = plan.sdkconfig { try Array(text.utf8).write(to: b.folder + "/sdkconfig") }

        let engine = ProtocolEngine(device: device)
        let config = try SDKConfig.remembered(inStateFolder: b.folder).map { BootConfig(sdkconfig: $0) }
        let boot = VirtualFirmware.hook(config: config)
        if b.defect == .reheadered {
            engine.firmware = { device in
                Self.reheaderBootloader(&device)
                return boot(&device)
            }
        } else {
            engine.firmware = boot
        }
        var faults: FaultPlan?
        if b.defect == .flaky { faults = try FaultPlan(spec: plan.flakyFaults) }
        // Pulled mid-write: the link goes once the write is under way.
        if b.defect == .pulled { faults = try FaultPlan(spec: "disconnect-after=\(plan.pullAfterBytes)") }
        let server = DeviceServer(store: store, engine: engine, faultPlan: faults, faultSeed: plan.seed &+ UInt64(index),
                                  realtime: plan.realtime)
        let listener = try bind(port: ports[slot])
        defer { close(listener) }
        let inserted = Date()
        lock.withLock { boards[index].inserted = inserted }
        // The operator takes a board out once the station shows its result: the station's
        // first probe after it worked on the board (a probe is a SYNC and two register reads; the
        // pipeline's sessions are longer, or run the firmware), plus `dwell` to react. A station
        // that stopped probing: after `idleAfterWork` without a connection.
        var worked = false, lastEnd = inserted, sessions = 0
        var probedAfterWork: Date?
        var why = "done"
        while true {
            let now = Date()
            if isStopping && !worked { why = "stopped"; break }
            if now.timeIntervalSince(inserted) > plan.maxBoardSeconds { why = "timeout"; break }
            if let probedAfterWork, now.timeIntervalSince(probedAfterWork) >= plan.dwell { break }
            if worked, now.timeIntervalSince(lastEnd) >= plan.idleAfterWork { why = "idle"; break }
            var pfd = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 20) > 0 else { continue }
            let client = accept(listener, nil, nil)
            guard client >= 0 else { continue }
            var yes: Int32 = 1
            setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &yes, socklen_t(MemoryLayout<Int32>.size))
            let before = engine.device.stats.total
            let disconnectsBefore = engine.device.stats.faults.disconnects
            try? server.serveClient(fd: client, deadline: inserted.addingTimeInterval(plan.maxBoardSeconds))
            close(client)
            sessions += 1
            lastEnd = Date()
            let after = engine.device.stats.total
            let probe = after.commands - before.commands <= 12 && after.firmwareRuns == before.firmwareRuns
            if !probe {
                worked = true
                probedAfterWork = nil
            } else if worked, probedAfterWork == nil {
                probedAfterWork = lastEnd
            }
            if b.defect == .pulled, engine.device.stats.faults.disconnects > disconnectsBefore { why = "pulled"; break }
        }
        lock.withLock {
            boards[index].removed = Date()
            boards[index].sessions = sessions
            boards[index].removal = why
        }
    }

    /// Binds the slot's listener again (its port stays the slot's address).
    private func bind(port: Int) throws -> Int32 {
        var last: Error?
        for _ in 0..<100 {
            do { return try DeviceServer.listen(host: "127.0.0.1", port: port).fd } catch {
                last = error
                usleep(20_000)
            }
        }
        throw last ?? UsageError("cannot listen on 127.0.0.1:\(port)")
    }

    /// ABS_DONE_1 and a key digest that is not this line's.
    static func secureByAnotherLine(_ device: inout Device, seed: UInt64) {
        let layout = EFuseLayout.esp32
        var r = SplitMix64(seed: seed)
        var digest = [UInt32](repeating: 0, count: layout.blockWordCounts[2])
        for i in digest.indices { digest[i] = UInt32(truncatingIfNeeded: r.next()) | 1 }
        _ = device.efuses.program(block: 2, words: digest, layout: layout)
        if let f = layout.field(named: "ABS_DONE_1") {
            _ = device.efuses.program(block: f.block, words: layout.mask(of: f), layout: layout)
        }
    }

    /// Rewrites the flash-size nibble of the bootloader's header after it was written (signed
    /// image bytes changed: the ROM's check fails). Encrypted flash is changed through the
    /// chip's key, so the rest of the block stays intact, as a re-flashed header would be.
    static func reheaderBootloader(_ device: inout Device) {
        let offset = 0x1000, sector = 0x1000
        guard var bytes = device.flash.read(offset, sector) else { return }
        guard let cnt = EFuseLayout.esp32.field(named: "FLASH_CRYPT_CNT") else { return }
        let crypt = device.efuses.integer(cnt, layout: .esp32)
        let cipher = crypt.nonzeroBitCount % 2 == 1 ? ESP32FlashKey.cipher(device.efuses) : nil
        var block = Array(bytes[0..<32])
        if let cipher { guard let plain = try? cipher.decrypt(block, at: offset) else { return }; block = plain }
        guard block[0] == 0xE9 else { return }
        block[3] = (block[3] & 0x0F) | (block[3] & 0xF0 == 0x30 ? 0x20 : 0x30)   // 4MB ↔ 8MB
        if let cipher { guard let enc = try? cipher.encrypt(block, at: offset) else { return }; block = enc }
        bytes.replaceSubrange(0..<32, with: block)
        _ = device.flash.eraseSectors(offset, sector, timing: .w25q32jv)
        _ = device.flash.program(offset, bytes, timing: .w25q32jv)
    }
}


private extension Array where Element == UInt8 {
    func write(to path: String) throws {
        try AtomicFile.write(self, to: path, mode: AtomicFile.publicMode)
    }
}
