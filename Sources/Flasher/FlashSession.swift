import Crypto
import Diagnostics
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
    /// The stub for a chip other than the ESP32, by chip name (``SessionChipFacts/stubName``), once
    /// the chip is detected. nil: ``stub`` is used whatever the chip (a stub given by the caller).
    /// The closure may return nil (the ROM loader) and throw (a stub that does not parse).
    public var stubForChip: (@Sendable (_ stubName: String) throws -> StubImage?)?
    /// Connect to the chips of ``FieldMapChipFacts`` (ESP32-S3/C3) too. Off by default: callers
    /// that read an S3/C3 another way catch ``FlasherError/unknownChip(magic:)`` from an ESP32-only
    /// session. The flasher's own flash jobs (``DeviceRunner/flash``, ``FlashOperations``) turn it on.
    public var fieldMapChips = false
    /// Compress where it is safe: always through a stub; through the ROM loader only on chips whose
    /// ROM compressed write is known to write exactly the region (``ChipSpec/romCompressedWriteSafe``;
    /// never on ESP32, whose ROM writes stale bytes past every compressed region).
    public var compress = true
    public var skipUnchanged = false
    public var encrypt = false
    /// Response timeout in seconds.
    public var timeout = 3.0
    /// Reconnects in a row without a newly verified piece (lost link, chip reset) before giving up.
    /// After a lost link a region's flash is checked by MD5 piece by piece
    /// (``LinkPolicy/resumePiece``) and the write resumes at the first piece that differs.
    public var maxReconnects = 5
    /// Opens the port by name: serial and socket:// built in; `virtual:DIR` only with an opener
    /// that has virtual-device support (`VirtualPorts.opener(firmware:)` in VirtualDevice).
    public var ports = PortOpener()
    /// Adapt to a noisy link: when a FLASH_DATA block fails repeatedly, restart the write with
    /// smaller blocks (down to ``LinkPolicy/minimumBlock``), then at a lower baud rate; climb back
    /// when blocks get through. The region's MD5 stays the judge of every write.
    public var adaptive = true
    public var linkPolicy = LinkPolicy()
    public init() {}
}

/// When and how far a session adapts its write blocks and baud rate to a noisy link.
public struct LinkPolicy: Sendable, Equatable {
    /// The smallest FLASH_DATA block through the stub. The stub takes any block length up to its
    /// 16 KiB buffer (it ignores FLASH_BEGIN's block-size word and the sequence number, and writes
    /// each packet's payload where the previous one ended), so the block may change between two
    /// packets of one stream. 128 bytes: at about two damaged bytes per thousand on the wire
    /// (drop = flip = 1e-3) a 128-byte block moves about 12 % more payload per second than a
    /// 256-byte one; below 128 the ~48 bytes of framing, header and reply per block outweigh what
    /// a shorter block saves at any rate where blocks still get through.
    public var minimumBlock = 0x80
    /// The block through the ROM loader: its own 1 KiB block (esptool's ROM write size). The ROM
    /// places block `seq` at `offset + seq * blockSize`, so the block is never changed there.
    public var romMinimumBlock = 0x400
    /// Attempts at one block before the stream is restarted (at the first piece that differs).
    public var attemptsPerBlock = 16
    /// Baud rates to step down through (only those below the session's rate are used).
    public var baudSteps = [921_600, 460_800, 230_400, 115_200]
    /// A lower baud rate is tried only when even the smallest block gets through at the first
    /// attempt less often than this (estimated over the recent attempts).
    public var baudTrialBelowPassRate = 0.5
    /// Attempts at the smallest block before a baud step is considered.
    public var attemptsBeforeBaudTrial = 24
    /// Attempts at a lower rate before judging it.
    public var baudTrialAttempts = 32
    /// The lower rate is kept only when the failures per byte fell to at most this fraction of
    /// the rate before; otherwise the session goes back up and steps the baud no more on this port.
    public var baudTrialGain = 0.5
    /// Blocks in a row accepted at the first attempt at a kept lower rate before trying one step up.
    public var cleanBlocksBeforeBaudUp = 64
    /// Baud steps down at most per session (a link that keeps flapping stays where it is).
    public var maxBaudDowns = 4
    /// The smallest response margin of a data block (seconds); the timeout is the block's wire
    /// time plus a margin from the reply latencies measured (``LinkEstimator/margin``), at least this.
    public var timeoutFloor = 0.01
    /// The margin of the first data blocks, before any reply latency was measured (seconds).
    public var initialMargin = 0.5
    /// After a restart, flash already written is found by MD5 in pieces of this size (multiple of 4 KiB).
    public var resumePiece = 0x4000
    /// When a region's MD5 is wrong after its stream, its flash is compared by MD5 in pieces of
    /// this size (multiple of 4 KiB) and only the pieces that differ are written again.
    public var repairPiece = 0x1000
    /// After a stream restart, the following streams of the region cover this much (ending on a
    /// 64 KiB boundary): a restart then erases again only what its stream covers, not the whole rest
    /// of the region. A clean link writes each region in one stream.
    public var restartStream = 0x10000
    /// Restarts in a row that neither made progress nor changed the rate, before giving up.
    public var maxStalledRestarts = 6
    public init() {}
}

/// What the link adaptation did on one port (all zero on a clean link).
public struct LinkAdaptation: Sendable, Codable, Equatable {
    public var initialBlock = 0
    public var finalBlock = 0
    public var smallestBlock = 0
    public var initialBaud = 0
    public var finalBaud = 0
    public var lowestBaud = 0
    public var blockShrinks = 0
    public var blockGrows = 0
    public var baudDowns = 0
    public var baudUps = 0
    /// Baud steps down undone because the failures per byte did not fall at the lower rate.
    public var baudReverts = 0
    /// True once a baud step did not help: the session steps the baud no more on this port.
    public var baudStepsDisabled = false
    /// Write streams restarted after a failure (each resumes at the first piece whose MD5 differs).
    public var restarts = 0
    /// Data blocks that got no reply within their timeout.
    public var timeouts = 0
    /// Lost frame delimiters recovered without resending (a reply taken without its closing
    /// delimiter, or a request completed by a lone delimiter).
    public var delimiterRecoveries = 0
    /// Data block replies that arrived damaged and were read from their remains (taken or rejected).
    public var damagedReplies = 0
    /// Data block replies that came after their timeout, before a probe's reply (a stalled link):
    /// taken as the block's outcome instead of sending the block again.
    public var lateReplies = 0
    /// FLASH_DATA payload bytes put on the wire, retries and restarts included.
    public var payloadBytesSent = 0
    public init() {}

    public var adapted: Bool { blockShrinks + baudDowns > 0 }

    /// One line for the summary.
    public var summary: String {
        var parts: [String] = []
        if blockShrinks + blockGrows > 0 {
            parts.append("blocks \(initialBlock) down to \(smallestBlock), ended at \(finalBlock) (\(blockShrinks) down, \(blockGrows) up)")
        }
        if baudDowns + baudUps > 0 {
            var b = "baud \(initialBaud) down to \(lowestBaud), ended at \(finalBaud) (\(baudDowns) down, \(baudUps) up"
            if baudReverts > 0 { b += ", \(baudReverts) undone: the lower rate did not reduce the errors" }
            parts.append(b + ")")
        }
        if restarts > 0 { parts.append("\(restarts) restart(s)") }
        if timeouts > 0 { parts.append("\(timeouts) timeout(s), \(delimiterRecoveries) lost delimiter(s) recovered") }
        if lateReplies > 0 { parts.append("\(lateReplies) late repl\(lateReplies == 1 ? "y" : "ies") taken") }
        return parts.isEmpty ? "no adaptation" : parts.joined(separator: ", ")
    }
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
    /// ESP32-S3/C3: the chip's detection row, eFuse field map and blocks, flash id and size (nil
    /// on an ESP32, whose facts are ``facts``).
    public private(set) var fieldMapChip: FieldMapTarget?
    /// The connected chip (either kind).
    public var spec: ChipSpec? { facts?.spec ?? fieldMapChip?.spec }
    /// The flash size the session set with SPI_SET_PARAMS (either kind of chip).
    public var flashSize: Int? { facts?.flashSize ?? fieldMapChip?.flashSize }
    /// The per-chip session facts of the connected chip (``SessionChipFacts``).
    public var chipFacts: SessionChipFacts? { spec.flatMap { SessionChipFacts.named($0.name) } }
    /// The facts the safety rules check a plan against (either kind of chip).
    public func target(source: String) -> TargetFacts? {
        if let facts { return facts.target }
        return fieldMapChip?.target(source: source)
    }
    /// The stub chosen for a non-ESP32 chip through ``SessionOptions/stubForChip`` (kept for reconnects).
    private var chipStub: StubImage??
    public private(set) var flashID: UInt32 = 0
    public private(set) var reconnects = 0
    /// Reconnects since the last verified piece (the limit applies to these).
    private var reconnectsWithoutProgress = 0
    /// What the link adaptation did (see ``SessionOptions/adaptive``).
    public private(set) var link = LinkAdaptation()
    /// The write block in use (nil until the first write), the baud rate chosen by adaptation
    /// (nil: `options.baud`), and blocks in a row that went through at the first attempt.
    private var block: Int?
    private var adaptedBaud: Int?
    private var cleanBlocks = 0
    /// The link's estimated fault rates and reply latencies (see ``LinkEstimator``).
    private var estimator: LinkEstimator?
    /// A lower baud rate on trial, attempts since the block or rate last changed.
    private var trial: BaudTrial?
    private var attemptsSinceBaudChange = 0
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
        try c.enterLoaderAndSync(before: options.before, portName: portName)
        // The ESP32 by its ROM magic word; any other chip through the field-map table (ESP32-S3/C3:
        // GET_SECURITY_INFO's chip id, else the magic word), which an ESP32 never gets asked.
        let spec: ChipSpec
        var fieldMap: (row: FieldMapChipFacts, map: EFuseFieldMap)?
        do { spec = try ChipProbe.detect(c) } catch FlasherError.unknownChip(let magic) {
            guard options.fieldMapChips, let row = ChipProbe.detectFieldMapChip(c), let map = EFuseFieldMap.named(row.name),
                  let s = ChipSpec.named(row.name) else { throw FlasherError.unknownChip(magic: magic) }
            spec = s
            fieldMap = (row, map)
        }
        if let known = self.spec, known.name != spec.name {
            // A reconnect found another kind of chip: another board.
            throw FlasherError.differentBoard(port: portName, expected: known.displayName, found: spec.displayName)
        }
        // Raise the rate first (the ROM supports CHANGE_BAUDRATE), so even the stub upload is fast.
        let baud = adaptedBaud ?? options.baud
        if baud != c.baud, !c.isStub { try c.changeBaud(baud) }
        // On a reconnect the facts are known, but the board may not be the same one: a board pulled
        // and another put in its place during a reconnect must never receive the rest of the
        // first board's write. The MAC words are read again (two registers) and compared.
        var efuses: EFuseArray?
        var blockWords: EFuseBlockWords?
        if let fieldMap {
            // Every block is read until two readings agree (``ChipProbe/readBlocks``): one noisy
            // read cannot look like another board's MAC.
            if let known = fieldMapChip {
                // A reconnect: the MAC's words of BLOCK1 only (few commands on a link that just failed).
                var words = known.words
                guard let mac = try RegisterReadings.agreeing(maxReadings: 6, { () throws -> [UInt32] in
                    try (0..<2).map { try c.readRegister(known.map.controllerBase + known.map.readRegisterOffset(block: 1) + UInt32(4 * $0)) }
                }) else {
                    throw FlasherError.badResponse(command: "READ_REG (MAC)", why: "no two readings of the MAC agreed")
                }
                for (w, v) in mac.enumerated() { words.setWord(1, w, v) }
                let was = EFuseFieldMapSummary(words: known.words, map: known.map).mac
                let found = EFuseFieldMapSummary(words: words, map: known.map).mac
                guard was == found else { throw FlasherError.differentBoard(port: portName, expected: was, found: found) }
                blockWords = known.words
            } else {
                blockWords = try ChipProbe.readBlocks(c, map: fieldMap.map)
            }
        } else if let known = facts {
            let was = known.efuses.esp32MAC()
            // A register value has no checksum on the wire, so one noisy read could look like
            // another board: another MAC must be read three times in a row, the same each time.
            var readings: [[UInt8]] = []
            for _ in 0..<3 {
                let found = try EFuseArray.readESP32MAC(from: c, layout: known.layout)
                if found == was { readings = []; break }
                readings.append(found)
            }
            if let first = readings.first {
                guard readings.allSatisfy({ $0 == first }) else {
                    // Readings that disagree are noise: a link failure, and the reconnect tries again.
                    throw FlasherError.badResponse(command: "READ_REG (MAC)", why: "the MAC read back differently each time")
                }
                throw FlasherError.differentBoard(port: portName, expected: MACAddress.format(was), found: MACAddress.format(first))
            }
            efuses = known.efuses
        } else {
            efuses = try ChipProbe.readEFuses(c)
        }
        let stub = try stub(for: spec)
        let startingStub = stub != nil && !c.isStub
        do {
            if let stub, !c.isStub {
                // An S3 with Secure Boot on starts the stub through a ROM hook (``SessionChipFacts``).
                var secureBoot = false
                if let fieldMap, let words = blockWords {
                    secureBoot = EFuseFieldMapSummary(words: words, map: fieldMap.map).security.secureBootEnabled
                }
                try c.runStub(stub, readHook: secureBoot ? SessionChipFacts.named(spec.name)?.secureBootStubReadHook : nil)
                emit("stub", detail: "running \(URL(fileURLWithPath: stub.source).lastPathComponent)")
            }
            if baud != c.baud { try c.changeBaud(baud) }
            try c.spiAttach()
        } catch {
            if startingStub, let stub {
                stubFailure = .stubFailed(stub: URL(fileURLWithPath: stub.source).lastPathComponent, why: describe(error))
            }
            throw error
        }
        stubFailure = nil
        if let fieldMap {
            if fieldMapChip == nil { flashID = try ChipProbe.flashID(c, fieldMap.row) }
        } else if facts == nil {
            flashID = try c.flashID()
        }
        let code = Int((flashID >> 16) & 0xFF)
        let size = (0x12...0x1C).contains(code) ? 1 << code : 4 << 20
        try c.spiSetParams(size: size)
        if let fieldMap, let words = blockWords {
            if fieldMapChip == nil {
                let summary = EFuseFieldMapSummary(words: words, map: fieldMap.map)
                fieldMapChip = FieldMapTarget(row: fieldMap.row, map: fieldMap.map, spec: spec, words: words, flashID: flashID,
                                              flashSize: size, chipRevision: summary.majorRevision * 100 + summary.minorRevision)
            }
        } else if let efuses {
            facts = ChipFacts(spec: spec, flashSize: size, efuses: efuses)
        }
        emit("connected", detail: "\(spec.displayName), \(c.isStub ? "stub" : "ROM") loader, \(c.baud) baud, flash \(size >> 20)MB")
    }

    /// The stub for the detected chip: the chip's own (``SessionOptions/stubForChip``, looked up
    /// once per session), or ``SessionOptions/stub`` when no per-chip lookup is set.
    func stub(for spec: ChipSpec) throws -> StubImage? {
        guard let lookup = options.stubForChip else { return options.stub }
        if let chosen = chipStub { return chosen }
        let name = SessionChipFacts.named(spec.name)?.stubName ?? spec.name
        let found = try lookup(name)
        chipStub = .some(found)
        return found
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
            } catch FlasherError.differentBoard(let p, let e, let f) {
                throw FlasherError.differentBoard(port: p, expected: e, found: f)
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
            if let chip = fieldMapChip {
                return ChipInfo.fieldMap(chip.words, map: chip.map, row: chip.row, flashID: flashID, loader: c.isStub ? "stub" : "ROM")
            }
            guard let facts else { throw FlasherError.gaveUp(port: portName, why: "not connected") }
            let date = try c.readRegister(0x3FF6_607C)
            let clk = try c.readRegister(0x3FF4_0014)
            return facts.info(apbCtrlDate: date, uartClkDiv: clk, baud: c.baud, flashID: flashID,
                              loader: c.isStub ? "stub" : "ROM")
        }
    }

    // MARK: Write

    /// Writes a checked plan. Refuses a plan with blocking findings without sending anything.
    public func write(_ plan: SafetyReport) throws -> [RegionResult] {
        guard !plan.refused else { throw FlasherError.refused(codes: plan.blockingCodes) }
        var results: [RegionResult] = []
        for region in plan.regions {
            var data = region.data
            // An encrypted write goes in the engine's units (16 bytes on S3/C3): padded with 0xFF,
            // as esptool pads it; the address must be aligned already.
            let unit = options.encrypt ? (chipFacts?.encryptedWriteAlign ?? 4) : 4
            if options.encrypt, region.address % unit != 0 {
                throw FlasherError.badArgument("\(region.name) at \(hex(region.address)): an encrypted write on \(spec?.displayName ?? "this chip") must start on a \(unit)-byte boundary",
                                               hint: "place the file at a multiple of \(unit) (partitions and images are 4 KiB aligned)")
            }
            if data.count % unit != 0 { data += [UInt8](repeating: 0xFF, count: unit - data.count % unit) }
            let requested = data
            data = try withReconnect { try keepSectorTail(address: region.address, data: data) }
            // One compressed stream per region (best compression). After a failure, the pieces
            // already on flash are found by MD5 and the stream restarts at the first one that differs.
            var start = 0
            var attempts = 0
            let last: RegionResult = try withReconnect {
                if attempts > 0 {
                    // What the lost connection got onto flash, in the pieces a stream restart uses
                    // (``LinkPolicy/resumePiece``): a connection that carries less than a large
                    // piece still counts as progress, so a link cut every few hundred KB finishes.
                    // It resumes after the last piece that is right, as a stream restart does: a
                    // piece before it that differs (a block damaged past its 8-bit checksum, about
                    // one 4 KiB block in a hundred at drop = flip = 1e-4) is repaired once the region
                    // is through (``repairRegion``), instead of writing everything after it again.
                    let resumed = try resumeAfterStream(try requireClient(), address: region.address, data: data,
                                                        from: start, to: data.count)
                    if resumed > start {
                        start = resumed
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
            if attempts > 1, !options.encrypt {
                // After a reconnect the last stream covered only the rest: the whole region is
                // checked, and pieces left wrong before the resume point are written again.
                try withReconnect { try repairRegion(address: region.address, data: data, name: region.name) }
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

    /// Checks a whole region by its MD5 and writes again the repair pieces that differ (a few
    /// rounds); throws when it stays wrong.
    func repairRegion(address: Int, data: [UInt8], name: String) throws {
        let c = try requireClient()
        let md5 = Array(Insecure.MD5.hash(data: data))
        var got: [UInt8] = []
        for _ in 0..<8 {
            got = try c.flashMD5(address: address, size: data.count)
            if got == md5 { return }
            let runs = try differingRuns(c, address: address, data: data)
            emit("retry", address: address,
                 detail: "after a reconnect: writing again the \(runs.reduce(0) { $0 + $1.count }) bytes whose pieces differ")
            for run in runs {
                _ = try writeRegion(FlashRegion(address: address + run.lowerBound, data: Array(data[run]), name: name))
            }
        }
        throw FlasherError.verifyFailed(address: address, length: data.count, expected: md5.hexString, actual: got.hexString)
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
        startLinkReport(c, at: region.address)
        // One stream per region while the link is clean (best compression). After a failed block
        // the stream restarts, possibly at another rate, at the first piece of the region whose MD5
        // on flash differs; when the region's MD5 is wrong at the end (the 8-bit XOR checksum of a
        // block misses two flips of the same bit), only the pieces that differ are written again.
        // An encrypted write cannot be checked that way and restarts at the region's start.
        var runs: [Range<Int>] = [0..<data.count]
        var compressed = false
        var payloadBytes = 0
        var mismatches = 0
        var stalled = 0
        var restarts = 0
        var firstStream = true
        let noisyFromStart = c.isStub && (c.linkStatistics.faultRate ?? 0) > 0
        let maxRestarts = 64 + data.count / 0x400
        var lastFailure: Error = FlasherError.timeout(command: "FLASH_DATA")
        while true {
            while let run = runs.first {
                var start = run.lowerBound
                let end = run.upperBound
                while start < end {
                    // After a restart, streams end at the next boundary of a 64 KiB erase block at
                    // least ``LinkPolicy/restartStream`` further on: a stream's FLASH_BEGIN erases (or
                    // has the stub erase) everything it announces, so a stream over the whole rest
                    // of the region would erase it again at every restart.
                    // A link that damaged short commands while connecting is windowed from the
                    // start: a stream over the whole region would have the stub erase all of it
                    // ahead of the data, and the first restart erase much of it again.
                    var stop = end
                    if restarts > 0 || link.restarts > 0 || reconnects > 0 || noisyFromStart, options.adaptive, !options.encrypt {
                        let window = max(0x1000, options.linkPolicy.restartStream / 0x1000 * 0x1000)
                        let absolute = region.address + start + window
                        let aligned = (absolute + 0xFFFF) / 0x10000 * 0x10000
                        stop = min(end, max(start + 0x1000, aligned - region.address))
                    }
                    let part = Array(data[start..<stop])
                    var payload = part
                    var z = false
                    if mayCompress(c), let d = Deflate.compress(part), d.count < part.count {
                        payload = d
                        z = true
                    }
                    if firstStream {
                        compressed = z
                        payloadBytes = payload.count
                        firstStream = false
                    }
                    do {
                        try sendRegion(c, region: FlashRegion(address: region.address + start, data: part, name: region.name),
                                       data: part, payload: payload, compressed: z)
                        start = stop
                    } catch RegionRestart.restart(let why, let step) {
                        lastFailure = why
                        c.drainInput()
                        link.restarts += 1
                        let stepped = try adapt(c, step, at: region.address + start, why: why)
                        let resumed = try resumeAfterStream(c, address: region.address, data: data, from: start, to: stop)
                        if resumed > start || stepped {
                            stalled = 0
                        } else {
                            stalled += 1
                        }
                        restarts += 1
                        guard stalled <= options.linkPolicy.maxStalledRestarts, restarts <= maxRestarts else { throw lastFailure }
                        start = resumed
                        emit("resume", address: region.address + start, size: end - start,
                             detail: "\(block ?? 0)-byte blocks at \(c.baud) baud")
                    }
                }
                runs.removeFirst()
            }
            if options.encrypt {
                // The chip stored ciphertext: its MD5 cannot match the plaintext.
                return RegionResult(address: region.address, size: data.count, name: region.name, outcome: .written,
                                    md5: md5.hexString, compressed: compressed, payloadBytes: payloadBytes)
            }
            let got = try c.flashMD5(address: region.address, size: data.count)
            if got == md5 {
                return RegionResult(address: region.address, size: data.count, name: region.name, outcome: .written,
                                    md5: md5.hexString, compressed: compressed, payloadBytes: payloadBytes)
            }
            lastFailure = FlasherError.verifyFailed(address: region.address, length: data.count,
                                                    expected: md5.hexString, actual: got.hexString)
            mismatches += 1
            guard mismatches < 8 else { throw lastFailure }
            // No piece differs: the region's MD5 reply was damaged on the way (it has no checksum);
            // the next round asks again.
            runs = try differingRuns(c, address: region.address, data: data)
            emit("retry", address: region.address,
                 detail: "MD5 mismatch; writing again the \(runs.reduce(0) { $0 + $1.count }) bytes whose pieces differ")
        }
    }

    /// The runs of repair pieces of `data` whose MD5 on flash differs (adjacent pieces merged):
    /// 64 KiB pieces first, then the repair pieces inside the 64 KiB ones that differ (a few MD5
    /// requests instead of one per 4 KiB on a noisy link, where each may need sending again).
    func differingRuns(_ c: LoaderClient, address: Int, data: [UInt8]) throws -> [Range<Int>] {
        let piece = max(0x1000, options.linkPolicy.repairPiece / 0x1000 * 0x1000)
        let coarse = max(piece, 0x10000 / piece * piece)
        var runs: [Range<Int>] = []
        var outer = 0
        while outer < data.count {
            let n = min(coarse, data.count - outer)
            defer { outer += n }
            if coarse > piece, try c.flashMD5(address: address + outer, size: n) == Array(Insecure.MD5.hash(data: data[outer..<(outer + n)])) {
                continue
            }
            runs += try differingRuns(c, address: address, data: data, in: outer..<(outer + n), piece: piece)
        }
        // Merge runs that touch across the coarse pieces.
        var merged: [Range<Int>] = []
        for r in runs {
            if let last = merged.last, last.upperBound == r.lowerBound {
                merged[merged.count - 1] = last.lowerBound..<r.upperBound
            } else {
                merged.append(r)
            }
        }
        return merged
    }

    func differingRuns(_ c: LoaderClient, address: Int, data: [UInt8], in range: Range<Int>, piece: Int) throws -> [Range<Int>] {
        var runs: [Range<Int>] = []
        var at = range.lowerBound
        while at < range.upperBound {
            let n = min(piece, range.upperBound - at)
            if try c.flashMD5(address: address + at, size: n) != Array(Insecure.MD5.hash(data: data[at..<(at + n)])) {
                if let last = runs.last, last.upperBound == at {
                    runs[runs.count - 1] = last.lowerBound..<(at + n)
                } else {
                    runs.append(at..<(at + n))
                }
            }
            at += n
        }
        return runs
    }

    /// The write block the loader starts with (the stub's 16 KiB, the ROM's 1 KiB).
    func defaultBlock(_ c: LoaderClient) -> Int {
        c.isStub ? LoaderProtocol.stubWriteBlock : LoaderProtocol.romWriteBlock
    }

    func startLinkReport(_ c: LoaderClient, at address: Int = 0) {
        guard block == nil else { return }
        block = defaultBlock(c)
        link.initialBlock = defaultBlock(c)
        link.finalBlock = defaultBlock(c)
        link.smallestBlock = defaultBlock(c)
        link.initialBaud = c.baud
        link.finalBaud = c.baud
        link.lowestBaud = c.baud
        // The stub takes any block size: start at the one the link measured while connecting
        // calls for (``LinkEstimator/seed(faultRate:weight:)``).
        if options.adaptive, c.isStub, c.linkStatistics.faultRate ?? 0 > 0, let b = block {
            _ = resize(c, linkEstimator(c), current: b, at: address)
        }
    }

    /// Where a broken stream over `data[from..<to]` resumes: after the last resume piece in that
    /// range whose MD5 on flash is right. A piece that differs before it (a block damaged on the
    /// wire in a way its 8-bit checksum misses, which an uncompressed stretch of a compressed
    /// stream carries to flash without an inflate error) is left to the repair after the region's
    /// MD5 (``differingRuns``), instead of writing everything after it again.
    func resumeAfterStream(_ c: LoaderClient, address: Int, data: [UInt8], from: Int, to end: Int) throws -> Int {
        guard !options.encrypt else { return 0 }
        let piece = max(0x1000, options.linkPolicy.resumePiece / 0x1000 * 0x1000)
        var at = from / piece * piece
        var resume = at
        while at < end {
            let n = min(piece, end - at)
            if try c.flashMD5(address: address + at, size: n) == Array(Insecure.MD5.hash(data: data[at..<(at + n)])) {
                resume = at + n
            }
            at += n
        }
        return resume
    }

    /// A baud step (blocks change inside a stream, see ``sendRegion``). Returns whether the rate changed.
    func adapt(_ c: LoaderClient, _ step: LinkStep, at address: Int, why: Error) throws -> Bool {
        guard options.adaptive, block != nil else { return false }
        let policy = options.linkPolicy
        switch step {
        case .none:
            return false
        case .down:
            guard let lower = policy.baudSteps.first(where: { $0 < c.baud }) else { return false }
            let from = c.baud
            let before = estimator?.anyFailureRate ?? 0
            try c.changeBaud(lower)
            adaptedBaud = lower
            trial = BaudTrial(from: from, to: lower, rateBefore: before)
            link.baudDowns += 1
            link.lowestBaud = min(link.lowestBaud, lower)
            emit("adapt", address: address,
                 detail: "baud \(from) → \(lower) on trial: \(block ?? 0)-byte blocks still fail (\(describe(why)))")
        case .revert:
            guard let t = trial else { return false }
            try c.changeBaud(t.from)
            adaptedBaud = t.from == options.baud ? nil : t.from
            trial = nil
            link.baudUps += 1
            link.baudReverts += 1
            link.baudStepsDisabled = true
            emit("adapt", address: address,
                 detail: "baud \(t.to) → \(t.from): the errors did not fall at the lower rate (\(perMB(t.rateAfter)) vs \(perMB(t.rateBefore)) failures per MB); no more baud steps on this port")
        case .up:
            guard c.baud < options.baud else { return false }
            let from = c.baud
            let higher = policy.baudSteps.reversed().first(where: { $0 > from && $0 <= options.baud }) ?? options.baud
            try c.changeBaud(higher)
            adaptedBaud = higher == options.baud ? nil : higher
            link.baudUps += 1
            emit("adapt", address: address, detail: "baud \(from) → \(higher): blocks get through")
        }
        attemptsSinceBaudChange = 0
        cleanBlocks = 0
        link.finalBaud = c.baud
        return true
    }

    func perMB(_ rate: Double) -> String { String(format: "%.1f", rate * 1_048_576) }

    func minimumBlock(_ c: LoaderClient) -> Int {
        min(defaultBlock(c), c.isStub ? options.linkPolicy.minimumBlock : options.linkPolicy.romMinimumBlock)
    }

    /// The estimator for this link, created with the block sizes this loader can take.
    func linkEstimator(_ c: LoaderClient) -> LinkEstimator {
        if let estimator { return estimator }
        var sizes: [Int] = []
        var b = defaultBlock(c)
        while b >= minimumBlock(c) { sizes.append(b); b /= 2 }
        var e = LinkEstimator(candidates: sizes)
        e.marginFloor = options.linkPolicy.timeoutFloor
        e.marginCeiling = max(options.timeout, options.linkPolicy.timeoutFloor)
        // A stub answers a block once it arrived whole (it writes it afterwards); a reply later
        // than this before anything was measured is caught by the probe.
        e.initialMargin = options.linkPolicy.initialMargin
        // The link as connecting measured it: on a noisy one the first block is already small
        // instead of 16 KiB blocks failing until enough of them were counted.
        if let rate = c.linkStatistics.faultRate { e.seed(faultRate: rate) }
        estimator = e
        return e
    }

    /// Short commands (MD5 of a piece, register reads) wait what the link was measured to need,
    /// not a flat 3 s, once replies were measured.
    func tuneShortTimeout(_ c: LoaderClient, _ est: LinkEstimator) {
        guard options.adaptive, c.port.kind != .virtual, est.shortCommandTimeout < options.timeout else { return }
        c.timeout = est.shortCommandTimeout
    }

    /// How long a probe after a data block's timeout waits for the block's late reply (or its own):
    /// normally one round trip; the wait is paid in full only when the probe is lost too.
    func lateReplyWait(_ e: LinkEstimator) -> Double {
        min(max(options.timeout, e.marginFloor), e.lateReplyWait)
    }

    /// Seconds one lost reply costs (its timeout and the wait after the delimiter sent to
    /// recover it). In-process virtual ports answer at once (no wall clock): the floor is charged.
    /// The block choice charges it what it costs on the link itself: the margin its lowest recent
    /// latency calls for (``LinkEstimator/linkMargin``), not one inflated by a busy host's
    /// scheduling delays, which would talk the block size up on a link that damages every
    /// larger block.
    func timeoutCost(_ c: LoaderClient, _ e: LinkEstimator) -> Double {
        2 * (c.port.kind == .virtual ? e.marginFloor : e.linkMargin)
    }

    enum LinkStep { case none, down, up, revert }
    enum RegionRestart: Error { case restart(Error, LinkStep) }

    /// A write erases whole 4 KiB sectors, so the bytes after a region's end in its last sector
    /// would be lost: when they hold anything but 0xFF they are read and written back with the
    /// region (never for `--encrypt`, where the chip would encrypt the ciphertext again).
    func keepSectorTail(address: Int, data: [UInt8]) throws -> [UInt8] {
        let end = address + data.count
        let sectorEnd = (end + LoaderSectorSize - 1) & ~(LoaderSectorSize - 1)
        guard !options.encrypt, sectorEnd > end, let flashSize, sectorEnd <= flashSize else { return data }
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
        return c.isStub || (spec?.romCompressedWriteSafe ?? false)
    }

    func sendRegion(_ c: LoaderClient, region: FlashRegion, data: [UInt8], payload: [UInt8], compressed: Bool) throws {
        let firstBlock = self.block ?? defaultBlock(c)
        let blocks = (payload.count + firstBlock - 1) / firstBlock
        let writeSize = compressed ? (c.isStub ? data.count : (data.count + firstBlock - 1) / firstBlock * firstBlock) : data.count
        var begin = le(UInt32(writeSize), UInt32(blocks), UInt32(firstBlock), UInt32(region.address))
        let chip = chipFacts
        if options.encrypt {
            guard c.isStub || chip?.romEncryptedWrite == true else {
                throw FlasherError.romUnsupported("--encrypt on \(spec?.displayName ?? "this chip")")
            }
            begin += le(1)
        } else if chip?.beginCarriesEncryptFlag == true {
            begin += le(0)
        }
        // The stub erases as it writes and answers FLASH_BEGIN at once (esptool waits its default
        // timeout there); the ROM erases the whole region first.
        // Once the link's replies were measured, a lost reply to it costs the short timeout
        // (``tuneShortTimeout``), not 3 s: on a noisy link every restart and repair piece begins a stream.
        let eraseTimeout = c.isStub ? (options.adaptive ? min(options.timeout, c.timeout) : options.timeout)
            : max(options.timeout, 40 * Double(writeSize) / 1e6)
        do {
            try c.retrying(compressed ? .flashDeflBegin : .flashBegin, begin, timeout: eraseTimeout)
        } catch FlasherError.commandFailed(let command, let status, let code)
            where options.encrypt && chip?.beginCarriesEncryptFlag == true && !LoaderClient.isTransient(code) {
            // The chip's loader refuses the encrypted-write flag itself (DIS_DOWNLOAD_MANUAL_ENCRYPT
            // burned, or no XTS key purpose): not a link failure, so no reconnect.
            throw FlasherError.encryptedWriteRefused(chip: spec?.displayName ?? "the chip", command: command, status: status, error: code)
        }
        let op: Opcode = compressed ? .flashDeflData : .flashData
        // Uncompressed streams are padded to whole blocks of the size announced (as esptool does);
        // a smaller block later (a power of two dividing it) never sends more than announced.
        var body = payload
        if !compressed { body += [UInt8](repeating: 0xFF, count: blocks * firstBlock - payload.count) }
        // The stub takes each packet's own length: the block may change inside the stream.
        let variable = options.adaptive && c.isStub
        let adaptive = options.adaptive
        var est = linkEstimator(c)
        defer {
            estimator = est
            // Short commands (MD5 of a piece, register reads) wait what the link was measured to
            // need, not a flat 3 s, once replies were measured.
            tuneShortTimeout(c, est)
        }
        var block = firstBlock
        var pos = 0
        var seq: UInt32 = 0
        while pos < body.count {
            let chunk = Array(body[pos..<min(body.count, pos + block)])
            let packet = CommandPacket.dataBlock(op, sequence: seq, payload: chunk)
            let fixedTimeout = compressed ? max(options.timeout, 40 * Double(block * 4) / 1e6) : options.timeout
            var attempt = 0
            var silentInARow = 0
            let attemptLimit = adaptive ? max(6, options.linkPolicy.attemptsPerBlock) : 6
            var resized = false
            while true {
                let t = adaptive ? est.timeout(payload: chunk.count, baud: c.baud) : fixedTimeout
                let started = Date()
                var failed = false, timedOut = false, accepted = false, silent = false
                var failure: FlasherError?
                link.payloadBytesSent += chunk.count
                c.judgeDataReplies = adaptive && c.isStub
                defer { c.judgeDataReplies = false }
                do {
                    try c.command(op, packet.data, checksum: packet.checksum, timeout: t)
                    accepted = true
                    if c.port.kind != .virtual {
                        let wire = (Double(chunk.count) + est.overhead) * 10 / Double(c.baud)
                        est.recordLatency(Date().timeIntervalSince(started) - wire)
                    }
                } catch let thrown as FlasherError {
                    var e = thrown
                    // No reply in time: the reply may only be held up on the way. A probe tells (the
                    // loader answers in order): the block's own reply before the probe's is its
                    // outcome, and a stall costs its delay instead of a second copy of the block.
                    if adaptive, c.isStub, case .timeout = e,
                       LoaderClient.judgeDamagedStubReply(c.damagedFrames, op: op) == .unknown {
                        let late = try c.probeForLateReply(op, timeout: lateReplyWait(est), quietAfterFrame: est.margin)
                        silent = late == .nothing
                        switch late {
                        case let .reply(r):
                            link.lateReplies += 1
                            // A reply held up on the way measures the link's latency; one that came
                            // right after the probe was a request ended by the probe's opening
                            // delimiter (its own was lost), which says nothing about latency.
                            let sinceProbe = Date().timeIntervalSince(started) - t
                            if c.port.kind != .virtual, sinceProbe > max(0.05, 4 * est.latencyMean) {
                                est.recordLatency(Date().timeIntervalSince(started) - (Double(chunk.count) + est.overhead) * 10 / Double(c.baud))
                            }
                            // A ROM-shaped reply (four status bytes) while the stub runs: the chip left it.
                            if r.data.count == 4, r.data[2] == 0, r.data[3] == 0 { throw FlasherError.deviceReset }
                            let status = r.data[0], code = r.data[1]
                            if code >= 0xC0 || (code != 0 && status != 0) {
                                e = .commandFailed(command: op.name, status: max(status, 1), error: code)
                            } else {
                                accepted = true
                            }
                        case .damaged:
                            e = .badResponse(command: op.name, why: "reply damaged on the wire")
                        case .probeAnswered, .nothing:
                            break
                        }
                    }
                    failure = e
                    // The remains of a damaged stub reply tell whether the block was taken.
                    var verdict = LoaderClient.DamagedReply.unknown
                    if accepted {
                        // The late reply said taken.
                    } else if adaptive, c.isStub, !c.damagedFrames.isEmpty {
                        switch e {
                        case .timeout, .badResponse: verdict = LoaderClient.judgeDamagedStubReply(c.damagedFrames, op: op)
                        default: break
                        }
                    }
                    switch e {
                    case _ where accepted:
                        break
                    case _ where verdict == .used:
                        accepted = true
                        link.damagedReplies += 1
                        if case .badResponse = e, c.port.kind != .virtual {
                            est.recordLatency(Date().timeIntervalSince(started) - (Double(chunk.count) + est.overhead) * 10 / Double(c.baud))
                        }
                    case _ where verdict == .rejected:
                        failed = true
                        link.damagedReplies += 1
                        failure = .commandFailed(command: op.name, status: 1, error: LoaderErrorCode.stubBadChecksum.rawValue)
                    case .timeout:
                        // No reply, not even a damaged one. (No lone delimiter is sent to end a
                        // request that may have lost its own: on a real stub, whose SLIP state
                        // toggles on every delimiter, a delimiter sent to an idle stub would make
                        // the next request's opening one end an empty frame, which it runs from
                        // its stale buffer. The resend's opening delimiter ends such a request.)
                        timedOut = true
                        link.timeouts += 1
                    case .deviceReset:
                        throw e
                    case let .commandFailed(_, _, code) where adaptive && c.isStub && !Self.streamBroken(code):
                        // Any other error code from the stub (or a code damaged on the way): the
                        // block was not used.
                        failed = true
                        failure = .commandFailed(command: op.name, status: 1, error: LoaderErrorCode.stubBadChecksum.rawValue)
                    default:
                        failed = true
                    }
                }
                // Any reply that came (an error, a damaged one) measures the round trip too: at
                // high noise successes are rare, and the margin must not wait for them.
                if adaptive, !timedOut, !accepted, c.port.kind != .virtual {
                    let wire = (Double(chunk.count) + est.overhead) * 10 / Double(c.baud)
                    est.recordLatency(Date().timeIntervalSince(started) - wire)
                }
                if adaptive {
                    est.record(payload: chunk.count, failed: failed || (!accepted && !timedOut), timedOut: timedOut)
                    trial?.record(payload: chunk.count, overhead: est.overhead, failed: !accepted || timedOut)
                    attemptsSinceBaudChange += 1
                }
                // An uncompressed stub stream whose reply is unknown (none, or damaged beyond
                // reading): the stub writes each block where the previous one ended, so a block
                // it did take must not come again. Its flash tells: MD5 of where the block went.
                if !accepted, adaptive, c.isStub, !compressed, let e = failure, Self.ambiguous(e) {
                    tuneShortTimeout(c, est)
                    let n = min(chunk.count, max(0, data.count - pos))
                    if n > 0, (try? c.flashMD5(address: region.address + pos, size: n)) == Array(Insecure.MD5.hash(data: chunk[0..<n])) {
                        accepted = true
                        link.damagedReplies += 1
                    }
                }
                if accepted { break }
                attempt += 1
                cleanBlocks = 0
                guard let e = failure else { throw FlasherError.timeout(command: op.name) }
                switch e {
                case let .commandFailed(_, _, code) where LoaderClient.isTransient(code) && attempt < attemptLimit:
                    // Rejected before it was used (damaged on the way): this block, or a smaller one
                    // from the same place, may be sent again.
                    break
                case .timeout where attempt < attemptLimit:
                    // No answer even to the delimiter: the request most likely never arrived whole.
                    // Resending is safe for uncompressed ROM blocks (same data, same address); the
                    // stub writes where it stopped, so a block it did use and that comes again ends
                    // as a wrong piece, which the region's MD5 check finds and the resume rewrites.
                    break
                case .badResponse where !compressed && !c.isStub && attempt < attemptLimit:
                    break
                case .timeout, .badResponse, .commandFailed:
                    // A damaged reply: the loader may have used the block; start the stream over
                    // at the first piece that differs.
                    throw RegionRestart.restart(e, .none)
                default: throw e
                }
                c.noteRetry()
                // Resynchronise only after the link went silent (no reply, not even to a probe)
                // several times in a row; after a reply that came (a rejection, a damaged reply,
                // an answered probe) nothing more is on the way, so no settling wait either.
                silentInARow = silent || (timedOut && !(adaptive && c.isStub)) ? silentInARow + 1 : 0
                if silentInARow > 0, silentInARow % 3 == 0 {
                    try? c.resync()
                } else {
                    c.drainInput(settle: !adaptive || silentInARow > 0)
                }
                try adaptBaud(c, est, at: region.address + pos, why: e)
                if variable, let smaller = resize(c, est, current: block, at: region.address + pos), smaller != block {
                    block = smaller
                    resized = true
                    break
                }
            }
            if resized { continue }
            pos += chunk.count
            seq &+= 1
            sent(region: region, payload: payload.count, done: pos)
            if attempt == 0 { cleanBlocks += 1 }
            guard adaptive else { continue }
            try adaptBaud(c, est, at: region.address + pos, why: FlasherError.timeout(command: op.name))
            if variable, let next = resize(c, est, current: block, at: region.address + pos) { block = next }
            // Blocks get through at a kept lower rate: try one step up (a restart, when enough is left).
            if trial == nil, c.baud < options.baud, cleanBlocks >= options.linkPolicy.cleanBlocksBeforeBaudUp,
               body.count - pos >= 64 * 1024 {
                throw RegionRestart.restart(FlasherError.timeout(command: op.name), .up)
            }
        }
    }

    /// A failure that leaves open whether the loader took the block (no reply, or a damaged one).
    static func ambiguous(_ e: FlasherError) -> Bool {
        switch e {
        case .timeout, .badResponse: return true
        default: return false
        }
    }

    /// Stub errors after which the stream cannot go on (inflate error, too much data, not writing).
    static func streamBroken(_ code: UInt8) -> Bool {
        [LoaderErrorCode.stubInflate, .stubTooMuchData, .stubNotInFlashMode].map(\.rawValue).contains(code)
    }

    func sent(region: FlashRegion, payload: Int, done: Int) {
        emit("progress", address: region.address, size: payload, done: min(done, payload))
    }

    /// The block with the best expected goodput (nil or `current`: no change); reports a change.
    func resize(_ c: LoaderClient, _ est: LinkEstimator, current: Int, at address: Int) -> Int? {
        let baud = Double(c.baud) / 10
        let latency = c.port.kind == .virtual ? 0 : est.latencyFloor * baud
        let next = est.bestBlock(current: current, latency: latency, timeoutCost: timeoutCost(c, est) * baud)
        guard next != current else { return nil }
        block = next
        if next < current {
            link.blockShrinks += 1
            link.smallestBlock = min(link.smallestBlock, next)
        } else {
            link.blockGrows += 1
        }
        link.finalBlock = next
        emit("adapt", address: address,
             detail: "block \(current) → \(next) bytes (estimated \(perMB(est.faultRate)) damaged per MB, \(String(format: "%.1f", 100 * est.timeoutRate)) % of replies lost)")
        return next
    }

    /// Baud trial bookkeeping after an attempt: judge a running trial (keep or undo), or start
    /// one when even the smallest block fails too often. Throws a restart when the rate changes.
    func adaptBaud(_ c: LoaderClient, _ est: LinkEstimator, at address: Int, why: Error) throws {
        let policy = options.linkPolicy
        if let t = trial {
            guard t.attempts >= policy.baudTrialAttempts else { return }
            if t.rateAfter > policy.baudTrialGain * t.rateBefore { throw RegionRestart.restart(why, .revert) }
            trial = nil
            emit("adapt", address: address,
                 detail: "baud \(t.to) kept: \(perMB(t.rateAfter)) failures per MB, down from \(perMB(t.rateBefore))")
            return
        }
        guard !link.baudStepsDisabled, link.baudDowns < policy.maxBaudDowns, let b = block, b <= minimumBlock(c),
              attemptsSinceBaudChange >= policy.attemptsBeforeBaudTrial,
              est.passRate(block: b) < policy.baudTrialBelowPassRate,
              policy.baudSteps.contains(where: { $0 < c.baud }) else { return }
        throw RegionRestart.restart(why, .down)
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
        guard let flashSize, address + size <= flashSize else {
            throw FlasherError.badArgument("erase range ends past the flash", hint: "check the size")
        }
        try withReconnect { try requireClient().eraseRegion(address: address, size: size) }
        emit("erased", address: address, size: size)
    }

    public func eraseAll() throws {
        guard let flashSize else { throw FlasherError.gaveUp(port: portName, why: "not connected") }
        try withReconnect { try requireClient().eraseChip(size: flashSize) }
        emit("erased", address: 0, size: flashSize)
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
