import Crypto
import EFuse
import ESPCore
import Foundation
import Loader
import Transport

/// The host side of the ESP serial loader protocol over any ``ChipPort``: framing, command/response
/// matching, retries with the same sequence number, resync. One instance per port, one thread.
public final class LoaderClient: RegisterAccess, LinkResynchronizing {
    public let port: ChipPort
    /// True once the flasher stub answers (2 status bytes, 16 KiB blocks, stub-only commands).
    public private(set) var isStub = false
    /// The loader's current UART rate.
    public private(set) var baud = 115_200
    /// Default response timeout in seconds (esptool: 3).
    public var timeout: Double = 3
    /// Counters for reports and tests.
    public private(set) var retries = 0
    public private(set) var resyncs = 0
    /// Bytes this client put on the wire (SLIP framed).
    public private(set) var bytesSent = 0

    func countRetry() { retries += 1 }

    private var decoder = SLIPDecoder()
    private var frames: [[UInt8]] = []
    private var resetSeen = false

    public init(port: ChipPort) {
        self.port = port
    }

    /// Resets the chip into its ROM loader as `before` says and SYNCs: on a serial port `rounds`
    /// resets (the sequence varies per round) of `attempts` SYNCs each; one round on a link
    /// without reset lines or with `.noReset`. Other errors than no answer end it at once.
    public func enterLoaderAndSync(before: ResetMode, portName: String, rounds: Int = 4, attempts: Int = 7) throws {
        let tries = before == .noReset || port.kind != .serial ? 1 : rounds
        for attempt in 0..<tries {
            try ResetSequence.enterLoader(port, mode: before, attempt: attempt)
            do {
                try sync(attempts: attempts)
                return
            } catch FlasherError.noSync { continue }
        }
        throw FlasherError.noSync(port: portName, attempts: tries * attempts)
    }

    /// Forget protocol state after a reconnect (the chip is back in its ROM at 115200).
    public func resetState() {
        isStub = false
        baud = 115_200
        decoder = SLIPDecoder()
        frames = []
        resetSeen = false
    }

    // MARK: Framing

    func send(_ packet: CommandPacket) throws {
        let bytes = SLIP.encode(packet.encode())
        bytesSent += bytes.count
        try port.write(bytes)
    }

    func sendRaw(frameBody: [UInt8]) throws {
        let bytes = SLIP.encode(frameBody)
        bytesSent += bytes.count
        try port.write(bytes)
    }

    /// Next complete frame, or nil after `timeout` seconds without one.
    func nextFrame(timeout: Double) throws -> [UInt8]? {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            if !frames.isEmpty { return frames.removeFirst() }
            let remaining = deadline.timeIntervalSinceNow
            let chunk = try port.read(timeout: max(0, remaining))
            if chunk.isEmpty {
                if port.kind == .virtual || remaining <= 0 { return nil }
                continue
            }
            for event in decoder.feed(chunk) {
                switch event {
                case let .frame(f): if !f.isEmpty { frames.append(f) }
                case let .junk(j):
                    // A reply whose opening delimiter was lost arrives as bytes between frames.
                    if j.count <= 16 { damagedFrames.append(j) }
                    // Text between frames: the ROM banner means the chip was reset.
                    if String(decoding: j, as: UTF8.self).contains("waiting for download") { resetSeen = true }
                case .invalidEscape, .oversized: break
                }
            }
            if resetSeen {
                resetSeen = false
                frames = []
                throw FlasherError.deviceReset
            }
        }
    }

    // MARK: Commands

    /// Sends a command once and waits for the response with the same opcode. Checks the status
    /// bytes after `outputLength` bytes of output; returns the response.
    @discardableResult
    public func command(_ op: Opcode, _ data: [UInt8] = [], checksum: UInt32 = 0, outputLength: Int = 0,
                        timeout: Double? = nil, failOnDamage: Bool = false) throws -> ResponsePacket {
        damagedFrames = []
        let packet = CommandPacket(op, data: data, checksum: checksum)
        let sentBefore = bytesSent
        let started = Date()
        try send(packet)
        let requestBytes = bytesSent - sentBefore
        do {
            let r = try awaitResponse(op, outputLength: outputLength, timeout: timeout ?? self.timeout, failOnDamage: failOnDamage)
            noteExchange(op, requestBytes: requestBytes, replyBytes: r.data.count + 10, failed: false, started: started)
            return r
        } catch let e as FlasherError {
            switch e {
            case .timeout, .badResponse:
                noteExchange(op, requestBytes: requestBytes, replyBytes: outputLength + 12, failed: true, started: started)
            case let .commandFailed(_, _, code) where Self.isTransient(code):
                noteExchange(op, requestBytes: requestBytes, replyBytes: outputLength + 12, failed: true, started: started)
            default: break
            }
            throw e
        }
    }

    /// What the link did to the short commands (everything but flash data blocks, which the
    /// session's ``LinkEstimator`` follows): attempts, those damaged or lost, and the wire bytes
    /// both ways. Measured while connecting (register reads, the stub upload), before the first
    /// data block: ``faultRate`` tells the write which block size to start with.
    public struct LinkStatistics: Sendable, Equatable {
        public var attempts = 0
        public var failures = 0
        public var wireBytes = 0
        /// The last 512 exchanges: wire bytes, and whether it failed.
        var recent: [Exchange] = []
        struct Exchange: Sendable, Equatable { var bytes: Int; var failed: Bool }

        public init() {}

        public mutating func record(bytes: Int, failed: Bool) {
            attempts += 1
            failures += failed ? 1 : 0
            wireBytes += bytes
            if recent.count >= 512 { recent.removeFirst(recent.count - 511) }
            recent.append(Exchange(bytes: bytes, failed: failed))
        }
        /// Largest reply latency beyond the wire time (seconds, decaying by 0.98 per reply), and
        /// how many replies were measured.
        public var latencyMax = 0.0
        public var latencySamples = 0

        /// Damaged (or lost) bytes per wire byte over the recent exchanges: the rate λ under which
        /// exchanges of `s` bytes each fail with probability `1 - exp(-λ·s)` is likeliest to have
        /// given the failures seen (exchanges differ in size: 30-byte register reads, 6 KiB
        /// upload blocks). 0 without failures; nil before 20 exchanges.
        public var faultRate: Double? {
            guard recent.count >= 20 else { return nil }
            let passed = Double(recent.lazy.filter { !$0.failed }.reduce(0) { $0 + $1.bytes })
            guard recent.contains(where: \.failed) else { return 0 }
            // The slope of the log-likelihood, decreasing in λ: its zero is the estimate.
            func slope(_ rate: Double) -> Double {
                recent.lazy.filter(\.failed).reduce(-passed) { d, e in
                    let x = rate * Double(max(e.bytes, 1))
                    return d + Double(max(e.bytes, 1)) * exp(-x) / max(-expm1(-x), 1e-300)
                }
            }
            var low = 1e-8, high = 0.5
            guard slope(high) < 0 else { return high }
            for _ in 0..<64 {
                let mid = (low * high).squareRoot()
                if slope(mid) > 0 { low = mid } else { high = mid }
            }
            return (low * high).squareRoot()
        }
    }

    /// The link as the short commands saw it (``LinkStatistics``).
    public private(set) var linkStatistics = LinkStatistics()

    func noteExchange(_ op: Opcode, requestBytes: Int, replyBytes: Int, failed: Bool, started: Date) {
        // In-process virtual ports (tests, the simulator) keep the fixed block schedule their
        // seeded faults were chosen for, and answer at once (no latency to learn).
        guard port.kind != .virtual else { return }
        if !Self.flashDataOps.contains(op) {
            linkStatistics.record(bytes: requestBytes + replyBytes, failed: failed)
        }
        // Latencies of the commands a loader answers at once, and of data blocks (whose replies
        // may wait behind the stub's last write and its erase); not of MD5s, erases, or the ROM's
        // FLASH_BEGIN, whose replies wait for the work itself.
        guard !failed, Self.flashDataOps.contains(op) || Self.quickOps.contains(op) else { return }
        let wire = Double(requestBytes + replyBytes) * 10 / Double(max(baud, 1))
        let latency = max(0, Date().timeIntervalSince(started) - wire)
        linkStatistics.latencyMax = max(linkStatistics.latencyMax * 0.98, latency)
        linkStatistics.latencySamples += 1
    }

    static let flashDataOps: Set<Opcode> = [.flashData, .flashDeflData]
    static let quickOps: Set<Opcode> = [.readReg, .writeReg, .spiAttach, .spiSetParams, .changeBaudrate, .memBegin, .memData]

    /// The timeout of a command the loader answers at once (a register read or write, SPI set-up,
    /// a baud change): three times the largest recent reply latency and 50 ms more (at least
    /// 0.1 s), once three replies were measured; until then one second. Never more than
    /// ``timeout``. Replies that waited behind a flash erase count among the latencies, so once
    /// a write ran the timeout covers a stub still busy with one.
    public var quickTimeout: Double {
        guard port.kind != .virtual, linkStatistics.latencySamples >= 3 else { return min(timeout, 1) }
        return min(timeout, 1, max(0.1, 3 * linkStatistics.latencyMax + 0.05))
    }

    /// While set (a stub data block is waiting for its reply), a damaged reply whose remains are
    /// readable (``judgeDamagedStubReply(_:op:)``) ends the wait at once instead of the timeout.
    public var judgeDataReplies = false

    /// Frames (and stray bytes) seen while waiting for the last command's reply that were not a
    /// well-formed reply to it: what is left of a reply damaged on the wire.
    public private(set) var damagedFrames: [[UInt8]] = []

    /// What the damaged remains of a flasher stub's reply to a data block say about the block. A
    /// stub data reply is a header (direction 1, the opcode, length, a zero value) and two status
    /// bytes: zero for success; an error code 0xC0-0xCF with a non-zero status for failure. One
    /// lost or flipped byte leaves this recognisable: an error code among the last two bytes means
    /// the block was rejected; nothing but zeros after the opcode and length means it was taken.
    public static func judgeDamagedStubReply(_ frames: [[UInt8]], op: Opcode) -> DamagedReply {
        for frame in frames {
            // Ours: the opcode in its place (one byte damaged elsewhere), the direction byte lost
            // (9 bytes starting with the opcode), or a stray byte in front (its opening delimiter
            // damaged). A frame with another opcode is not ours (a stale reply, or the answer to a
            // fragment of a request split by a damaged byte).
            var f = frame
            if f.count >= 10, f.count <= 12, f[1] == 0x01, f[2] == op.rawValue { f.removeFirst() }
            guard (f.count >= 9 && f.count <= 11 && f[1] == op.rawValue) || (f.count == 9 && f[0] == op.rawValue) else { continue }
            if f.suffix(2).contains(where: { $0 >= 0xC0 }) { return .rejected }
            if f.suffix(f.count - 4).allSatisfy({ $0 == 0 }) { return .used }
        }
        return .unknown
    }

    public enum DamagedReply: Sendable, Equatable { case used, rejected, unknown }

    /// `failOnDamage`: a frame that is no well-formed reply (a reply damaged on the wire) ends the
    /// wait at once with ``FlasherError/badResponse`` (for commands that are safe to repeat), instead
    /// of waiting out the timeout for a reply that will not come.
    func awaitResponse(_ op: Opcode, outputLength: Int, timeout: Double, failOnDamage: Bool = false) throws -> ResponsePacket {
        let deadline = Date().addingTimeInterval(timeout)
        for _ in 0..<100 {
            // A reply complete but for its closing delimiter is taken after 50 ms of quiet.
            let quiet = completeUnfinished(op, outputLength: outputLength) != nil
            let wait = max(0, deadline.timeIntervalSinceNow)
            guard let frame = try nextFrame(timeout: quiet ? min(wait, 0.05) : wait) else {
                // More bytes came into the unfinished frame meanwhile: wait on.
                if quiet, completeUnfinished(op, outputLength: outputLength) == nil, deadline.timeIntervalSinceNow > 0 { continue }
                break
            }
            guard let r = try? ResponsePacket.decode(frame), r.opcode == op.rawValue else {
                if frame.count <= 16 { damagedFrames.append(frame) }
                // A well-formed reply to another command is a stale one: wait on for ours.
                if failOnDamage, (try? ResponsePacket.decode(frame)) == nil {
                    throw FlasherError.badResponse(command: op.name, why: "reply damaged on the wire")
                }
                // A stub's reply to a data block that arrived damaged but readable: a fast failure.
                if judgeDataReplies, Self.judgeDamagedStubReply(damagedFrames, op: op) != .unknown {
                    throw FlasherError.badResponse(command: op.name, why: "reply damaged on the wire")
                }
                continue
            }
            if judgeDataReplies, r.data.count == 2 {
                // A stub data reply: the error byte decides (one flipped bit can turn the status
                // byte 1 into 0 or 0 into non-zero; the error codes are 0xC0 and up, success is 0).
                let status = r.data[0], code = r.data[1]
                if code >= 0xC0 || (code != 0 && status != 0) {
                    throw FlasherError.commandFailed(command: op.name, status: max(status, 1), error: code)
                }
                return r
            }
            // The ESP32 ROM ends its replies with four status bytes, the stub with two. A ROM-shaped
            // reply while the stub runs means the chip left the stub (a command header damaged on
            // the wire can turn into FLASH_END, which reboots it): sending on as if to the stub
            // would feed the ROM a compressed write, and the ROM writes stale bytes past the region.
            if isStub, [.flashBegin, .flashDeflBegin, .flashData, .flashDeflData].contains(op),
               r.data.count == outputLength + 4, r.data[outputLength + 2] == 0, r.data[outputLength + 3] == 0 {
                frames = []
                throw FlasherError.deviceReset
            }
            guard let st = r.status(outputLength: outputLength), r.data.count >= outputLength + 2 else {
                damagedFrames.append(frame)
                if let st = r.status(outputLength: 0), st.status != 0 {
                    throw FlasherError.commandFailed(command: op.name, status: st.status, error: st.error)
                }
                throw FlasherError.badResponse(command: op.name, why: "\(r.data.count) data byte(s), expected \(outputLength + 2) or more")
            }
            if st.status != 0 { throw FlasherError.commandFailed(command: op.name, status: st.status, error: st.error) }
            return r
        }
        // A reply complete but for its closing delimiter (lost on the wire): take it, and start
        // the decoder afresh so the next reply's opening delimiter opens a frame again.
        if let r = completeUnfinished(op, outputLength: outputLength), let st = r.status(outputLength: outputLength) {
            decoder = SLIPDecoder()
            delimiterRecoveries += 1
            if st.status != 0 { throw FlasherError.commandFailed(command: op.name, status: st.status, error: st.error) }
            return r
        }
        throw FlasherError.timeout(command: op.name)
    }

    /// What came back after a data block timed out and a probe was sent (``probeForLateReply``).
    public enum LateReply: Sendable, Equatable {
        /// The block's own reply, late (it came before the probe's): the block's outcome.
        case reply(ResponsePacket)
        /// The block's reply, damaged, with readable remains (see ``judgeDamagedStubReply``).
        case damaged(DamagedReply)
        /// The probe was answered first: the block's reply is lost (or the request never
        /// arrived whole), and the link carries replies.
        case probeAnswered
        /// Nothing came in time, not even the probe's reply.
        case nothing
    }

    /// Register read as the probe: the address every chip detection reads (esptool's chip-magic
    /// word at 0x40001000, ROM, readable on every supported chip); harmless inside a write stream.
    public static let probeRegister: UInt32 = 0x4000_1000

    /// After a data block got no reply within its timeout: sends a harmless register read and waits
    /// up to `timeout` for the block's reply to come after all. A loader answers in order, so the
    /// block's reply, if it was only held up on the way (a stalled link), arrives before the
    /// probe's; the probe's reply first means the block's reply will not come. A stall then costs
    /// its delay, not a second copy of the block (which the stub would write twice, or which would
    /// break its inflater). A request that lost its closing delimiter is ended by the probe's
    /// opening one, and its reply comes too.
    ///
    /// `quietAfterFrame`: once a frame came that decides nothing (a reply damaged beyond
    /// recognition, the block's or the probe's), wait at most this long for another before
    /// answering ``LateReply/nothing``, instead of the whole `timeout`: on a link that damages
    /// one byte in a thousand the probe's own reply is often the frame that came.
    public func probeForLateReply(_ op: Opcode, outputLength: Int = 0, timeout: Double,
                                  quietAfterFrame: Double? = nil) throws -> LateReply {
        probes += 1
        try send(CommandPacket(.readReg, data: le(Self.probeRegister)))
        var deadline = Date().addingTimeInterval(timeout)
        while true {
            let wait = max(0, deadline.timeIntervalSinceNow)
            guard let frame = try nextFrame(timeout: wait) else {
                if let r = completeUnfinished(op, outputLength: outputLength) {
                    decoder = SLIPDecoder()
                    delimiterRecoveries += 1
                    return .reply(r)
                }
                return .nothing
            }
            if let r = try? ResponsePacket.decode(frame) {
                if r.opcode == op.rawValue, r.data.count == outputLength + 2 || r.data.count == outputLength + 4 { return .reply(r) }
                // The probe's reply (its opcode maybe damaged on the way, or the reply to a damaged
                // probe): it came after the block's would have.
                if r.opcode != op.rawValue { return .probeAnswered }
            }
            // The probe's reply, damaged: it still came after the block's would have.
            if frame.count >= 9, frame.count <= 14, frame[1] == Opcode.readReg.rawValue { return .probeAnswered }
            if frame.count <= 16 { damagedFrames.append(frame) }
            let verdict = Self.judgeDamagedStubReply(damagedFrames, op: op)
            if verdict != .unknown { return .damaged(verdict) }
            if let quiet = quietAfterFrame { deadline = min(deadline, Date().addingTimeInterval(quiet)) }
        }
    }

    /// Probes sent after a data block's timeout.
    public private(set) var probes = 0

    /// The decoder's unfinished frame when it is a whole reply to `op` (only its closing
    /// delimiter missing).
    func completeUnfinished(_ op: Opcode, outputLength: Int) -> ResponsePacket? {
        guard let body = decoder.unfinishedFrame, let r = try? ResponsePacket.decode(body), r.opcode == op.rawValue,
              body.count == 8 + r.data.count, (outputLength + 2...outputLength + 4).contains(r.data.count) else { return nil }
        return r
    }

    /// Replies taken without their closing delimiter.
    public private(set) var delimiterRecoveries = 0


    /// A command that is safe to repeat: up to `attempts` tries with the same bytes; after two
    /// failures in a row the link is resynchronized first. Device resets and lost links propagate.
    @discardableResult
    ///
    /// `patience` (the stub only): after `timeout` without a reply, a probe
    /// (``probeForLateReply``) waits up to `patience` more. A reply late because the stub was
    /// still at work (an MD5 of a large range, behind an erase) comes before the probe's and is
    /// taken; the probe's reply first means this one was lost, and the command goes again at once
    /// instead of after the longest time the work could take.
    public func retrying(_ op: Opcode, _ data: [UInt8] = [], checksum: UInt32 = 0, outputLength: Int = 0,
                         timeout: Double? = nil, patience: Double? = nil, attempts: Int = 6) throws -> ResponsePacket {
        var lastError: Error = FlasherError.timeout(command: op.name)
        for attempt in 0..<attempts {
            if attempt > 0 {
                retries += 1
                if attempt % 3 == 0 {
                    try? resync()
                } else if case FlasherError.badResponse = lastError, port.kind != .virtual {
                    // A damaged reply came: what is left of it (a frame split by a damaged byte)
                    // follows at once, not a late reply that a timeout would wait 20 ms for.
                    usleep(3_000)
                    drainInput(settle: false)
                } else {
                    drainInput()
                }
            }
            do {
                do {
                    return try command(op, data, checksum: checksum, outputLength: outputLength, timeout: timeout, failOnDamage: true)
                } catch FlasherError.timeout(let name) where isStub && (patience ?? 0) > 0 {
                    guard case let .reply(r) = try probeForLateReply(op, outputLength: outputLength, timeout: patience ?? 0),
                          let st = r.status(outputLength: outputLength), r.data.count >= outputLength + 2 else {
                        throw FlasherError.timeout(command: name)
                    }
                    if st.status != 0 { throw FlasherError.commandFailed(command: op.name, status: st.status, error: st.error) }
                    return r
                }
            } catch let e as FlasherError {
                switch e {
                case .deviceReset: throw e
                case .timeout, .badResponse: lastError = e
                case .commandFailed where Self.readOnly.contains(op):
                    // A read changes nothing, and its request has no checksum: a flipped address or
                    // length byte gets an error (an address out of range: SPI failed) that the
                    // same request, sent again undamaged, does not.
                    lastError = e
                case let .commandFailed(_, _, code)
                    where Self.isTransient(code) || LoaderErrorCode(rawValue: code) == nil || code == LoaderErrorCode.undefined.rawValue:
                    // A code no loader sends is a reply damaged on the wire; so is a failure status
                    // with error 0 ("undefined"): one flipped bit turns a success's status byte 0
                    // into 2 (the command is safe to repeat, so it is).
                    lastError = e
                case let .commandFailed(_, _, code) where isStub && attempt == 0 && Self.carriedWriteError(code) && !Self.dataOps.contains(op):
                    // esptool's stub writes a data block after answering it; a write that then
                    // fails (an inflate error after a block damaged past its checksum, or sent
                    // twice) is answered to the next command instead of running it. That command
                    // did not run: once more.
                    lastError = e
                default: throw e
                }
            }
        }
        throw lastError
    }

    /// Errors of a stub's write that it answers to the command after the data block.
    static func carriedWriteError(_ code: UInt8) -> Bool {
        [LoaderErrorCode.stubInflate, .stubTooMuchData, .stubSPIFailed].map(\.rawValue).contains(code)
    }

    static let dataOps: Set<Opcode> = [.flashData, .flashDeflData, .memData]

    /// Commands that only read: any failure of theirs may be repeated.
    static let readOnly: Set<Opcode> = [.readReg, .spiFlashMD5, .readFlashSlow]

    /// Error codes that mean "the request arrived damaged; sending it again may work".
    static func isTransient(_ code: UInt8) -> Bool {
        [LoaderErrorCode.checksum, .invalidMessage, .stubBadChecksum, .stubBadDataLength, .receiveFailed]
            .map(\.rawValue).contains(code)
    }

    /// Drops frames and bytes that are already buffered (a late reply must not answer the next
    /// request). `settle`: first wait 20 ms for bytes still on the way (after a timeout); after a
    /// reply that came (an error, a damaged one) nothing more is on the way.
    func drainInput(settle: Bool = true) {
        frames = []
        decoder = SLIPDecoder()
        if settle, port.kind != .virtual { usleep(20_000) }
        port.flushInput()
    }

    // MARK: Sync and identification

    /// SYNC until the loader answers (each attempt: one SYNC, first reply within 0.1 s).
    public func sync(attempts: Int = 7) throws {
        for attempt in 0..<attempts {
            if attempt > 0 { drainInput() }
            do {
                try send(CommandPacket(.sync, data: LoaderProtocol.syncPayload))
                let r = try awaitResponse(.sync, outputLength: 0, timeout: port.kind == .virtual ? 0 : 0.1 + 0.4 * Double(attempt % 2))
                isStub = r.value == 0
                // The ROM sends eight replies; collect the rest so they do not answer later commands.
                let settle = port.kind == .virtual ? 0 : 0.05
                while let f = try nextFrame(timeout: settle) {
                    if let rr = try? ResponsePacket.decode(f), rr.opcode != Opcode.sync.rawValue {
                        frames.insert(f, at: 0)
                        break
                    }
                }
                return
            } catch let e as FlasherError {
                if case .deviceReset = e { continue }
                continue
            }
        }
        throw FlasherError.noSync(port: port.name, attempts: attempts)
    }

    /// ``LinkResynchronizing``: stale replies dropped, SYNC again.
    public func resynchronize() throws { try resync() }

    /// Resynchronize after repeated failures (drains, then SYNC).
    public func resync() throws {
        resyncs += 1
        drainInput()
        try sync(attempts: 3)
    }

    /// A register read: the loader answers at once, so a lost reply is not waited for more than
    /// a second (or the session's shorter timeout).
    public func readRegister(_ address: UInt32) throws -> UInt32 {
        try retrying(.readReg, le(address), timeout: quickTimeout).value
    }

    public func writeRegister(_ address: UInt32, _ value: UInt32) throws {
        try retrying(.writeReg, le(address, value, 0xFFFF_FFFF, 0), timeout: quickTimeout)
    }

    // MARK: Stub

    /// The stub upload's block sizes, largest first.
    static let uploadLadder = [LoaderProtocol.ramBlock, 0x400, 0x100, 0x80]

    /// The stub upload's block sizes, tried in order (a size whose blocks keep failing gives way to
    /// the next): the ROM's 6 KiB, 1 KiB, 256 and 128 bytes, starting at the one that moves the
    /// most per byte time on a link that damages `faultRate` of its bytes (a block of `b` bytes
    /// and about 48 of framing and reply gets through with probability `exp(-faultRate·(b+48))`,
    /// and costs `b + 48` byte times and about 100 more of turnaround).
    public static func uploadBlockSizes(faultRate: Double?) -> [Int] {
        let all = uploadLadder
        guard let rate = faultRate, rate > 0 else { return all }
        func goodput(_ b: Int) -> Double { Double(b) * exp(-rate * Double(b + 48)) / Double(b + 148) }
        let best = all.indices.max(by: { goodput(all[$0]) < goodput(all[$1]) }) ?? 0
        return Array(all[best...])
    }

    /// Uploads the stub to RAM and starts it; afterwards the stub protocol is spoken.
    ///
    /// `readHook`: start the stub through the ROM's legacy flash-read function pointer at this RAM
    /// address instead of MEM_END's entry (an ESP32-S3 with Secure Boot on does not run code from
    /// MEM_END): MEM_END without running, the pointer set to the entry, READ_FLASH_SLOW (no
    /// reply: it jumps into the stub), and the pointer restored once the stub greets.
    public func runStub(_ stub: StubImage, readHook: UInt32? = nil) throws {
        for (bytes, addr) in [(stub.text, stub.textStart), (stub.data, stub.dataStart)] where !bytes.isEmpty {
            // A noisy link: a segment whose blocks keep failing is sent again in smaller blocks
            // (the ROM places MEM_DATA block `seq` at `offset + seq * blockSize`).
            // The ROM copies a MEM_DATA block to RAM and answers at once: its reply is due after the
            // block's wire time, not after a flash operation, so a lost one is not waited for the
            // full default timeout (on a very noisy link most of the larger blocks fail).
            // The first size is the one the register reads before found best (see
            // ``uploadBlockSizes``): on a link that damages one byte in a thousand a 6 KiB block
            // almost never arrives whole.
            var block = Self.uploadBlockSizes(faultRate: linkStatistics.faultRate).first ?? LoaderProtocol.ramBlock
            while true {
                let smaller = Self.uploadLadder.filter { $0 < block }
                do {
                    let count = (bytes.count + block - 1) / block
                    try retrying(.memBegin, le(UInt32(bytes.count), UInt32(count), UInt32(block), addr), timeout: quickTimeout)
                    let wire = 1.5 * Double(block + 48) * 10 / Double(max(baud, 1))
                    let t = port.kind == .virtual ? timeout : min(timeout, quickTimeout + wire)
                    for seq in 0..<count {
                        let chunk = Array(bytes[(seq * block)..<min(bytes.count, (seq + 1) * block)])
                        let p = CommandPacket.dataBlock(.memData, sequence: UInt32(seq), payload: chunk)
                        try retrying(.memData, p.data, checksum: p.checksum, timeout: t, attempts: smaller.isEmpty ? 16 : 4)
                    }
                    break
                } catch let e as FlasherError {
                    switch e {
                    case .timeout, .badResponse, .commandFailed:
                        guard let next = smaller.first else { throw e }
                        drainInput()
                        // The failures just counted say more about the link: the best smaller size now.
                        block = Self.uploadBlockSizes(faultRate: linkStatistics.faultRate).first(where: { $0 < block }) ?? next
                    default: throw e
                    }
                }
            }
        }
        var restore: (address: UInt32, value: UInt32)?
        if let hook = readHook {
            try command(.memEnd, le(1, 0), timeout: 1)
            restore = (hook, try readRegister(hook))
            try writeRegister(hook, stub.entry)
            damagedFrames = []
            try send(CommandPacket(.readFlashSlow, data: le(0, 0)))
        } else {
            try command(.memEnd, le(0, stub.entry), timeout: 1)
        }
        // The stub greets with a raw "OHAI" frame.
        let deadline = Date().addingTimeInterval(port.kind == .virtual ? 0 : 2)
        repeat {
            guard let f = try nextFrame(timeout: max(0, deadline.timeIntervalSinceNow)) else { break }
            if f == Array("OHAI".utf8) {
                isStub = true
                if let restore { try writeRegister(restore.address, restore.value) }
                return
            }
        } while Date() < deadline
        throw FlasherError.stubNotStarted
    }

    // MARK: Flash

    public func spiAttach() throws {
        try retrying(.spiAttach, [UInt8](repeating: 0, count: 8), timeout: quickTimeout)
    }

    public func spiSetParams(size: Int) throws {
        try retrying(.spiSetParams, le(0, UInt32(size), 0x10000, 0x1000, 0x100, 0xFFFF), timeout: quickTimeout)
    }

    public func changeBaud(_ newBaud: Int) throws {
        try retrying(.changeBaudrate, le(UInt32(newBaud), isStub ? UInt32(baud) : 0), timeout: quickTimeout)
        try port.setBaud(newBaud)
        baud = newBaud
        if port.kind == .serial { usleep(50_000) }
        drainInput()
    }

    /// JEDEC id via the SPI1 user-command engine (RDID 0x9F, 24 bits), as the ROM exposes it.
    public func flashID() throws -> UInt32 {
        let base: UInt32 = 0x3FF4_2000
        let user = try readRegister(base + 0x1C), user2 = try readRegister(base + 0x24)
        try writeRegister(base + 0x2C, 23)                      // MISO_DLEN: 24 bits
        try writeRegister(base + 0x1C, 0x9000_0000)             // USER: COMMAND | MISO
        try writeRegister(base + 0x24, 0x7000_0000 | 0x9F)      // USER2: 8-bit command 0x9F
        try writeRegister(base + 0x80, 0)                       // W0
        try writeRegister(base + 0x00, 1 << 18)                 // CMD: USR
        var done = false
        for _ in 0..<10 where !done { done = try readRegister(base) & (1 << 18) == 0 }
        guard done else { throw FlasherError.badResponse(command: "SPI RDID", why: "SPI command did not complete") }
        let id = try readRegister(base + 0x80) & 0xFF_FFFF
        try writeRegister(base + 0x1C, user)
        try writeRegister(base + 0x24, user2)
        return id
    }

    /// MD5 of a flash range as the loader computes it (ROM: 32 hex characters; stub: 16 bytes).
    public func flashMD5(address: Int, size: Int) throws -> [UInt8] {
        // esptool allows 8 s per MB. The stub's reply is waited for that long only while a probe
        // says it is still at work: first 50 ms and what reading the range at 4 MB/s takes, then
        // the probe (a stub busy with an erase answers the MD5 before the probe).
        let t = max(timeout, 8 * Double(size) / 1e6)
        let first = min(t, 0.05 + Double(size) / 4e6)
        // (An in-process virtual port answers at once: one stage.)
        let staged = isStub && port.kind != .virtual
        let outLen = isStub ? 16 : 32
        let r = try retrying(.spiFlashMD5, le(UInt32(address), UInt32(size), 0, 0), outputLength: outLen,
                             timeout: staged ? first : t, patience: staged ? max(0, t - first) : nil)
        let out = Array(r.data[0..<outLen])
        if isStub { return out }
        guard let text = String(validating: out, as: UTF8.self), let bytes = hexBytes(text), bytes.count == 16 else {
            throw FlasherError.badResponse(command: "SPI_FLASH_MD5", why: "not 32 hex characters")
        }
        return bytes
    }

    /// Erases a sector-aligned range. Stub: ERASE_REGION; ROM: FLASH_BEGIN erases it up front.
    public func eraseRegion(address: Int, size: Int) throws {
        let t = max(3, 40 * Double(size) / 1e6)
        if isStub {
            try retrying(.eraseRegion, le(UInt32(address), UInt32(size)), timeout: t)
        } else {
            try retrying(.flashBegin, le(UInt32(size), 0, UInt32(LoaderProtocol.romWriteBlock), UInt32(address)), timeout: t)
        }
    }

    public func eraseChip(size: Int) throws {
        if isStub {
            try retrying(.eraseFlash, timeout: 120)
        } else {
            try eraseRegion(address: 0, size: size)
        }
    }

    /// Reads flash. Stub: READ_FLASH streaming with acknowledgements and a final MD5; ROM:
    /// READ_FLASH_SLOW, 64 bytes per command.
    public func readFlash(address: Int, size: Int, progress: (Int) -> Void = { _ in }) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(size)
        if !isStub {
            while out.count < size {
                let n = min(64, size - out.count)
                let r = try retrying(.readFlashSlow, le(UInt32(address + out.count), UInt32(n)), outputLength: 64)
                out += r.data[0..<n]
                if out.count % 4096 < 64 { progress(out.count) }
            }
            progress(out.count)
            return out
        }
        try command(.readFlash, le(UInt32(address), UInt32(size), 0x1000, 64))
        while out.count < size {
            guard let f = try nextFrame(timeout: timeout) else { throw FlasherError.timeout(command: "READ_FLASH data") }
            guard out.count + f.count <= size else {
                throw FlasherError.badResponse(command: "READ_FLASH", why: "more data than requested")
            }
            out += f
            try sendRaw(frameBody: le(UInt32(out.count)))
            progress(out.count)
        }
        guard let digest = try nextFrame(timeout: timeout), digest.count == 16 else {
            throw FlasherError.badResponse(command: "READ_FLASH", why: "no MD5 after the data")
        }
        guard out.count == size, Array(Insecure.MD5.hash(data: out)) == digest else {
            throw FlasherError.verifyFailed(address: address, length: size, expected: digest.hexString,
                                            actual: Array(Insecure.MD5.hash(data: out)).hexString)
        }
        return out
    }

    /// ROM loader: leave for the firmware in flash (FLASH_END with the run flag) without waiting
    /// for the reply. The reply frame and then the firmware's console follow on the port, to be
    /// read raw (a serial monitor's view; the client's framing would drop the text).
    /// `encryptFlagWord`: FLASH_BEGIN carries the fifth (encrypted-write) word, 0, as esptool
    /// sends it to every chip but the ESP32 (``SessionChipFacts/beginCarriesEncryptFlag``).
    ///
    /// `attempts`: a FLASH_BEGIN the ROM refused as damaged on the wire (a transient error code,
    /// a code no loader sends) or did not answer is sent again after a re-sync, up to `attempts`
    /// times in all: the chip that answered is still in its loader. FLASH_END(run) is sent once,
    /// without waiting for a reply, and never repeated (the chip may have left the loader).
    public func runFirmware(encryptFlagWord: Bool = false, attempts: Int = 1) throws {
        guard !isStub else { throw FlasherError.romUnsupported("running the firmware from the stub") }
        let begin = encryptFlagWord ? le(0, 0, UInt32(LoaderProtocol.romWriteBlock), 0, 0)
                                    : le(0, 0, UInt32(LoaderProtocol.romWriteBlock), 0)
        for attempt in 0..<max(1, attempts) {
            do {
                try command(.flashBegin, begin)
                break
            } catch let e as FlasherError where attempt + 1 < attempts && Self.beginMayBeRepeated(e) {
                retries += 1
                try resync()
            }
        }
        try send(CommandPacket(.flashEnd, data: le(1)))
    }

    /// A FLASH_BEGIN failure that a repeat may cure: the request or its reply damaged on the wire.
    static func beginMayBeRepeated(_ e: FlasherError) -> Bool {
        switch e {
        case .timeout, .badResponse: return true
        case let .commandFailed(_, _, code):
            return isTransient(code) || LoaderErrorCode(rawValue: code) == nil || code == LoaderErrorCode.undefined.rawValue
        default: return false
        }
    }

    /// Stub: leave the loader (run the new firmware); ROM: FLASH_END(run user code).
    public func leaveLoader() throws {
        if isStub {
            try command(.flashBegin, le(0, 0, UInt32(LoaderProtocol.stubWriteBlock), 0))
            try command(.flashEnd, le(1))
        } else {
            try command(.flashBegin, le(0, 0, UInt32(LoaderProtocol.romWriteBlock), 0))
            try command(.flashEnd, le(1))
        }
    }
}

/// Little-endian words.
func le(_ words: UInt32...) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(words.count * 4)
    for w in words { out.appendLE(w) }
    return out
}

func hexBytes(_ s: String) -> [UInt8]? {
    let chars = Array(s.utf8)
    guard chars.count % 2 == 0 else { return nil }
    var out: [UInt8] = []
    var i = 0
    while i < chars.count {
        guard let h = UInt8(String(decoding: chars[i..<(i + 2)], as: UTF8.self), radix: 16) else { return nil }
        out.append(h)
        i += 2
    }
    return out
}
