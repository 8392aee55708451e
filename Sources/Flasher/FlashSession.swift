import Crypto
import EFuse
import ESPCore
import Foundation
import Loader
import Transport

/// How to talk to a chip.
public struct SessionOptions: Sendable {
    /// UART rate after SYNC at 115200 (CHANGE_BAUDRATE); 115200 = no change.
    public var baud = 115_200
    public var before = ResetMode.defaultReset
    public var after = AfterMode.hardReset
    /// The flasher stub to run, or nil for the ROM loader.
    public var stub: StubImage?
    /// Compress where it is safe: always through a stub; through the ROM loader only on chips whose
    /// ROM compressed write is known to write exactly the region (``ChipSpec/romCompressedWriteSafe``;
    /// never on ESP32, whose ROM writes stale bytes past every compressed region).
    public var compress = true
    public var skipUnchanged = false
    public var encrypt = false
    /// Response timeout in seconds.
    public var timeout = 3.0
    /// Reconnects in a row without a newly verified piece (lost link, chip reset) before giving up.
    public var maxReconnects = 5
    /// After a lost link, a region's flash is checked by MD5 in pieces of this size (a multiple of
    /// 64 KiB) and the write resumes at the first piece that differs, not at the region's start.
    public var verifyChunk = 256 * 1024
    /// Opens the port by name: serial and socket:// built in; `virtual:DIR` only with an opener
    /// that has virtual-device support (`VirtualPorts.opener(firmware:)` in VirtualDevice).
    public var ports = PortOpener()
    public init() {}
}

/// Progress and results, one per line in `--json` mode.
public struct FlashEvent: Sendable, Codable, Equatable {
    public var device: String
    public var event: String
    public var address: Int?
    public var size: Int?
    public var done: Int?
    public var detail: String?
    public init(device: String, event: String, address: Int? = nil, size: Int? = nil, done: Int? = nil, detail: String? = nil) {
        self.device = device
        self.event = event
        self.address = address
        self.size = size
        self.done = done
        self.detail = detail
    }
}

/// What happened to one region.
public struct RegionResult: Sendable, Codable, Equatable {
    public enum Outcome: String, Sendable, Codable { case written, unchanged, verified, mismatch }
    public var address: Int
    public var size: Int
    public var name: String
    public var outcome: Outcome
    public var md5: String
    public var compressed: Bool
    /// Bytes sent as payload (after compression).
    public var payloadBytes: Int
}

/// One chip, one connection: connect (reset, sync, stub, attach, baud), read the facts, then
/// write/read/erase/verify. A lost link or a chip reset reconnects and resumes from the last
/// verified region.
public final class FlashSession {
    public let portName: String
    public var options: SessionOptions
    public private(set) var port: ChipPort?
    public private(set) var client: LoaderClient?
    public private(set) var facts: ChipFacts?
    public private(set) var flashID: UInt32 = 0
    public private(set) var reconnects = 0
    /// Reconnects since the last verified piece (the limit applies to these).
    private var reconnectsWithoutProgress = 0
    public var onEvent: (FlashEvent) -> Void = { _ in }

    public init(port: String, options: SessionOptions) {
        portName = port
        self.options = options
    }

    /// Uses an already open port (tests).
    public init(openPort: ChipPort, options: SessionOptions) {
        portName = openPort.name
        port = openPort
        self.options = options
    }

    func emit(_ event: String, address: Int? = nil, size: Int? = nil, done: Int? = nil, detail: String? = nil) {
        onEvent(FlashEvent(device: portName, event: event, address: address, size: size, done: done, detail: detail))
    }

    func requireClient() throws -> LoaderClient {
        guard let client else { throw FlasherError.gaveUp(port: portName, why: "not connected") }
        return client
    }

    // MARK: Connect

    /// Connects; link-level failures (noise, a chip reset, a lost link) reconnect and try again.
    public func connect() throws {
        stubFailure = nil
        do {
            do { try connectOnce() } catch {
                guard Self.isLinkFailure(error) else { throw error }
                try reconnect(after: error)
            }
        } catch {
            // A stub that was uploaded but did not work: say so (not "the link").
            if let stubFailure { throw stubFailure }
            throw error
        }
    }

    /// Set when the stub was being started or had just started and the connection failed.
    private var stubFailure: FlasherError?

    func connectOnce() throws {
        var opened = false
        if port == nil {
            port = try options.ports.open(portName)
            opened = true
        }
        guard let port else { throw FlasherError.gaveUp(port: portName, why: "no port") }
        if !opened, client != nil { try port.reopen() }
        let c = LoaderClient(port: port)
        c.timeout = options.timeout
        client = c
        var synced = false
        let rounds = options.before == .noReset || port.kind != .serial ? 1 : 4
        for attempt in 0..<rounds where !synced {
            try ResetSequence.enterLoader(port, mode: options.before, attempt: attempt)
            do {
                try c.sync(attempts: 7)
                synced = true
            } catch let e as FlasherError {
                if case .noSync = e { continue }
                throw e
            }
        }
        guard synced else { throw FlasherError.noSync(port: portName, attempts: rounds * 7) }
        let spec = try ChipProbe.detect(c)
        // Raise the rate first (the ROM supports CHANGE_BAUDRATE), so even the stub upload is fast.
        if options.baud != c.baud, !c.isStub { try c.changeBaud(options.baud) }
        // On a reconnect the facts are known: do not read them again (fewer commands on a bad link).
        let efuses = try facts?.efuses ?? ChipProbe.readEFuses(c)
        let startingStub = options.stub != nil && !c.isStub
        do {
            if let stub = options.stub, !c.isStub {
                try c.runStub(stub)
                emit("stub", detail: "running \(URL(fileURLWithPath: stub.source).lastPathComponent)")
            }
            if options.baud != c.baud { try c.changeBaud(options.baud) }
            try c.spiAttach()
        } catch {
            if startingStub, let stub = options.stub {
                stubFailure = .stubFailed(stub: URL(fileURLWithPath: stub.source).lastPathComponent, why: describe(error))
            }
            throw error
        }
        stubFailure = nil
        if facts == nil { flashID = try c.flashID() }
        let code = Int((flashID >> 16) & 0xFF)
        let size = (0x12...0x1C).contains(code) ? 1 << code : 4 << 20
        try c.spiSetParams(size: size)
        facts = ChipFacts(spec: spec, flashSize: size, efuses: efuses)
        emit("connected", detail: "\(spec.displayName), \(c.isStub ? "stub" : "ROM") loader, \(c.baud) baud, flash \(size >> 20)MB")
    }

    /// Reconnects after a lost link or a chip reset (new connection, SYNC, stub, baud, attach).
    func reconnect(after error: Error) throws {
        reconnects += 1
        reconnectsWithoutProgress += 1
        guard reconnectsWithoutProgress <= options.maxReconnects else {
            throw FlasherError.gaveUp(port: portName, why: "\(reconnectsWithoutProgress - 1) reconnect(s) in a row did not help: \(describe(error))")
        }
        emit("reconnect", detail: describe(error))
        var last: Error = error
        for _ in 0..<3 {
            do {
                if let port { try port.reopen() } else { port = try options.ports.open(portName) }
                client = nil
                try connectOnce()
                return
            } catch {
                last = error
                if case TransportError.openFailed = error { usleep(200_000) }
            }
        }
        throw FlasherError.gaveUp(port: portName, why: describe(last))
    }

    /// Runs `body`, reconnecting on link-level failures.
    func withReconnect<T>(_ body: () throws -> T) throws -> T {
        while true {
            do { return try body() } catch {
                guard Self.isLinkFailure(error) else { throw error }
                try reconnect(after: error)
            }
        }
    }

    static func isLinkFailure(_ e: Error) -> Bool {
        if e is TransportError { return true }
        guard let f = e as? FlasherError else { return false }
        switch f {
        case .deviceReset, .timeout, .noSync, .badResponse, .commandFailed, .stubNotStarted, .verifyFailed: return true
        default: return false
        }
    }

    /// Runs `body` with the loader client, reconnecting and running it again on link-level
    /// failures (use for idempotent work: register reads, MD5s).
    public func withClient<T>(_ body: (LoaderClient) throws -> T) throws -> T {
        try withReconnect { try body(try requireClient()) }
    }

    // MARK: Chip info

    public func chipInfo() throws -> ChipInfo {
        try withReconnect {
            let c = try requireClient()
            guard let facts else { throw FlasherError.gaveUp(port: portName, why: "not connected") }
            let date = try c.readRegister(0x3FF6_607C)
            let clk = try c.readRegister(0x3FF4_0014)
            return facts.info(apbCtrlDate: date, uartClkDiv: clk, baud: c.baud, flashID: flashID,
                              loader: c.isStub ? "stub" : "ROM")
        }
    }

    // MARK: Write

    /// Writes a checked plan. Refuses a plan with blocking findings without sending anything.
    public func write(_ plan: FlashPlan) throws -> [RegionResult] {
        guard !plan.refused else { throw FlasherError.refused(codes: plan.blockingCodes) }
        var results: [RegionResult] = []
        for region in plan.regions {
            var data = region.data
            if data.count % 4 != 0 { data += [UInt8](repeating: 0xFF, count: 4 - data.count % 4) }
            let requested = data
            data = try withReconnect { try keepSectorTail(address: region.address, data: data) }
            let chunk = max(0x10000, options.verifyChunk / 0x10000 * 0x10000)
            // One compressed stream per region (best compression). After a failure, the pieces
            // already on flash are found by MD5 and the stream restarts at the first one that differs.
            var start = 0
            var attempts = 0
            let last: RegionResult = try withReconnect {
                if attempts > 0 {
                    let c = try requireClient()
                    while start < data.count {
                        let n = min(chunk, data.count - start)
                        let expected = Array(Insecure.MD5.hash(data: data[start..<(start + n)]))
                        guard try c.flashMD5(address: region.address + start, size: n) == expected else { break }
                        start += n
                        reconnectsWithoutProgress = 0
                    }
                    emit("resume", address: region.address + start, size: data.count - start)
                }
                attempts += 1
                if start >= data.count {
                    return RegionResult(address: region.address, size: 0, name: region.name, outcome: .written,
                                        md5: "", compressed: false, payloadBytes: 0)
                }
                return try writeRegion(FlashRegion(address: region.address + start, data: Array(data[start...]), name: region.name))
            }
            reconnectsWithoutProgress = 0
            let r = RegionResult(address: region.address, size: requested.count, name: region.name,
                                 outcome: start == 0 && last.outcome == .unchanged ? .unchanged : .written,
                                 md5: Array(Insecure.MD5.hash(data: requested)).hexString,
                                 compressed: last.compressed, payloadBytes: last.payloadBytes)
            results.append(r)
            emit(r.outcome == .unchanged ? "unchanged" : "written", address: r.address, size: r.size, detail: "md5 \(r.md5)")
        }
        return results
    }

    func writeRegion(_ region: FlashRegion) throws -> RegionResult {
        let c = try requireClient()
        var data = region.data
        if data.count % 4 != 0 { data += [UInt8](repeating: 0xFF, count: 4 - data.count % 4) }
        let md5 = Array(Insecure.MD5.hash(data: data))
        if options.skipUnchanged, try c.flashMD5(address: region.address, size: data.count) == md5 {
            return RegionResult(address: region.address, size: data.count, name: region.name, outcome: .unchanged,
                                md5: md5.hexString, compressed: false, payloadBytes: 0)
        }
        var payload = data
        var compressed = false
        if mayCompress(c), let z = Deflate.compress(data), z.count < data.count {
            payload = z
            compressed = true
        }
        var lastFailure: Error = FlasherError.timeout(command: "FLASH_DATA")
        for _ in 0..<3 {
            do {
                try sendRegion(c, region: region, data: data, payload: payload, compressed: compressed)
            } catch RegionRestart.restart(let why) {
                lastFailure = why
                c.drainInput()
                continue
            }
            if options.encrypt {
                // The chip stored ciphertext: its MD5 cannot match the plaintext.
                return RegionResult(address: region.address, size: data.count, name: region.name, outcome: .written,
                                    md5: md5.hexString, compressed: compressed, payloadBytes: payload.count)
            }
            let got = try c.flashMD5(address: region.address, size: data.count)
            if got == md5 {
                return RegionResult(address: region.address, size: data.count, name: region.name, outcome: .written,
                                    md5: md5.hexString, compressed: compressed, payloadBytes: payload.count)
            }
            lastFailure = FlasherError.verifyFailed(address: region.address, length: data.count,
                                                    expected: md5.hexString, actual: got.hexString)
            emit("retry", address: region.address, detail: "MD5 mismatch; writing the region again")
        }
        throw lastFailure
    }

    enum RegionRestart: Error { case restart(Error) }

    /// A write erases whole 4 KiB sectors, so the bytes after a region's end in its last sector
    /// would be lost: when they hold anything but 0xFF they are read and written back with the
    /// region (never for `--encrypt`, where the chip would encrypt the ciphertext again).
    func keepSectorTail(address: Int, data: [UInt8]) throws -> [UInt8] {
        let end = address + data.count
        let sectorEnd = (end + LoaderSectorSize - 1) & ~(LoaderSectorSize - 1)
        guard !options.encrypt, sectorEnd > end, let facts, sectorEnd <= facts.flashSize else { return data }
        let c = try requireClient()
        let n = sectorEnd - end
        let blank = Array(Insecure.MD5.hash(data: [UInt8](repeating: 0xFF, count: n)))
        guard try c.flashMD5(address: end, size: n) != blank else { return data }
        let tail = try c.readFlash(address: end, size: n)
        emit("keep", address: end, size: n, detail: "\(n) bytes after the region in its last sector are not erased: written back")
        return data + tail
    }

    /// Whether a region may go compressed on this connection: asked for, not an encrypted write,
    /// and a loader whose compressed write stays inside the region (the stub, or a ROM recorded
    /// as safe in the chip table).
    func mayCompress(_ c: LoaderClient) -> Bool {
        guard options.compress, !options.encrypt else { return false }
        return c.isStub || (facts?.spec.romCompressedWriteSafe ?? false)
    }

    func sendRegion(_ c: LoaderClient, region: FlashRegion, data: [UInt8], payload: [UInt8], compressed: Bool) throws {
        let block = c.isStub ? LoaderProtocol.stubWriteBlock : LoaderProtocol.romWriteBlock
        let blocks = (payload.count + block - 1) / block
        let writeSize = compressed ? (c.isStub ? data.count : (data.count + block - 1) / block * block) : data.count
        var begin = le(UInt32(writeSize), UInt32(blocks), UInt32(block), UInt32(region.address))
        if options.encrypt {
            guard c.isStub else { throw FlasherError.romUnsupported("--encrypt on ESP32") }
            begin += le(1)
        }
        let eraseTimeout = max(options.timeout, 40 * Double(writeSize) / 1e6)
        try c.retrying(compressed ? .flashDeflBegin : .flashBegin, begin, timeout: eraseTimeout)
        let op: Opcode = compressed ? .flashDeflData : .flashData
        var sent = 0
        for seq in 0..<blocks {
            var chunk = Array(payload[(seq * block)..<min(payload.count, (seq + 1) * block)])
            if !compressed, chunk.count < block { chunk += [UInt8](repeating: 0xFF, count: block - chunk.count) }
            let packet = CommandPacket.dataBlock(op, sequence: UInt32(seq), payload: chunk)
            let t = compressed ? max(options.timeout, 40 * Double(block * 4) / 1e6) : options.timeout
            var attempt = 0
            while true {
                do {
                    try c.command(op, packet.data, checksum: packet.checksum, timeout: t)
                    break
                } catch let e as FlasherError {
                    attempt += 1
                    switch e {
                    case let .commandFailed(_, _, code) where LoaderClient.isTransient(code) && attempt < 6:
                        // Rejected before it was used: the same block (same sequence number) again.
                        c.noteRetry()
                        if attempt % 3 == 0 { try c.resync() } else { c.drainInput() }
                    case .timeout, .badResponse:
                        // We do not know whether the chip used it. Uncompressed blocks are idempotent
                        // (same data to the same address). In a compressed stream a block may be sent
                        // again only after a timeout: a request (16 KiB) is far more likely to have
                        // been lost than its few-byte reply, and if the stub did use it the repeat
                        // breaks the stream (inflate error → restart) or fails the region's MD5
                        // check. A damaged reply means the stub used the block: start over.
                        var timedOut = false
                        if case .timeout = e { timedOut = true }
                        guard !compressed || timedOut, attempt < 6 else { throw RegionRestart.restart(e) }
                        c.noteRetry()
                        if attempt % 3 == 0 { try c.resync() } else { c.drainInput() }
                    case .commandFailed: throw RegionRestart.restart(e)
                    default: throw e
                    }
                }
            }
            sent += chunk.count
            emit("progress", address: region.address, size: payload.count, done: min(sent, payload.count))
        }
    }

    // MARK: Read, erase, verify

    public func read(address: Int, size: Int) throws -> [UInt8] {
        try withReconnect {
            let c = try requireClient()
            return try c.readFlash(address: address, size: size) { done in
                self.emit("progress", address: address, size: size, done: done)
            }
        }
    }

    public func erase(address: Int, size: Int) throws {
        guard address % 0x1000 == 0, size % 0x1000 == 0, size > 0 else {
            throw FlasherError.badArgument("erase range \(hex(address))+\(hex(size)) is not sector aligned",
                                           hint: "address and size must be multiples of 0x1000")
        }
        guard let facts, address + size <= facts.flashSize else {
            throw FlasherError.badArgument("erase range ends past the flash", hint: "check the size")
        }
        try withReconnect { try requireClient().eraseRegion(address: address, size: size) }
        emit("erased", address: address, size: size)
    }

    public func eraseAll() throws {
        guard let facts else { throw FlasherError.gaveUp(port: portName, why: "not connected") }
        try withReconnect { try requireClient().eraseChip(size: facts.flashSize) }
        emit("erased", address: 0, size: facts.flashSize)
    }

    /// Compares the chip's MD5 of each region with the file's.
    public func verify(_ regions: [FlashRegion]) throws -> [RegionResult] {
        try regions.map { r in
            var data = r.data
            if data.count % 4 != 0 { data += [UInt8](repeating: 0xFF, count: 4 - data.count % 4) }
            let md5 = Array(Insecure.MD5.hash(data: data))
            let got = try withReconnect { try requireClient().flashMD5(address: r.address, size: data.count) }
            let result = RegionResult(address: r.address, size: data.count, name: r.name,
                                      outcome: got == md5 ? .verified : .mismatch, md5: got.hexString,
                                      compressed: false, payloadBytes: 0)
            emit(got == md5 ? "verified" : "mismatch", address: r.address, size: data.count, detail: "md5 \(got.hexString)")
            return result
        }
    }

    /// Closes without any reset (the chip stays where it is).
    public func finishWithoutReset() {
        port?.close()
        client = nil
    }

    /// `--after`, then close.
    public func finish() {
        if let port {
            if options.after == .hardReset, port.kind == .serial {
                try? ResetSequence.hardReset(port)
            }
            port.close()
        }
        client = nil
    }
}

extension LoaderClient {
    func noteRetry() { countRetry() }
}

func describe(_ e: Error) -> String {
    (e as? DiagnosticConvertible)?.diagnostic.message ?? "\(e)"
}
