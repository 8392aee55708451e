import Crypto
import EFuse
import ESPCore
import FlashEncryption
import Foundation
import Partitions
import VirtualDevice

/// Options of one simulated power-on.
public struct BootConfig: Sendable {
    /// The project's configuration (what the flashed bootloader was built with).
    public var sdkconfig: SDKConfig
    /// Flash and eFuse timing (virtual time).
    public var timing: TimeModel = .w25q32jv
    /// GPIO strapping value the ROM prints as `boot:0x..`. Any value with GPIO0 high boots from
    /// SPI flash (`SPI_FAST_FLASH_BOOT`); only the printed number differs. The default is
    /// ``devKitStrapping`` (0x13, what ESP32 DevKitC-style boards print); Espressif's QEMU and the
    /// golden recordings use ``qemuStrapping`` (0x12), so replays pass that explicitly.
    public var strapping: UInt8 = BootConfig.devKitStrapping
    /// `boot:0x13`: the default (typical development board booting from flash).
    public static let devKitStrapping: UInt8 = 0x13
    /// `boot:0x12`: Espressif's QEMU esp32 machine booting from flash (the golden recordings).
    public static let qemuStrapping: UInt8 = 0x12
    /// ESP-IDF version of the bootloader (wording and behaviour follow it, see ``IDFVersion``);
    /// default: the flashed bootloader's descriptor, else the sdkconfig header, else v4.4.
    public var idfVersion: String?
    /// Compile time the banner prints; default: the descriptor's, else a placeholder.
    public var compileTime: String?
    /// Seed for the hardware RNG (flash-encryption key); nil = the host's secure RNG.
    public var rngSeed: UInt64?
    /// How many resets the simulation follows (the flash-encryption reset needs one).
    public var maxPowerCycles = 3
    /// How many `invalid header` lines to print before giving up (the real ROM loops forever).
    public var invalidHeaderRepeats = 4

    public init(sdkconfig: SDKConfig = SDKConfig()) { self.sdkconfig = sdkconfig }
}

/// The first-boot simulator: the ESP32 (rev 3) ROM and the ESP-IDF second-stage bootloader
/// (v4.4 or v5.0–v5.3 wording and behaviour, per ``BootloaderDialect``), run against a ``Device``'s flash and eFuses. It changes the device exactly as the
/// chip would (eFuse burns, in-place encryption, otadata writes) and returns the console log and a
/// structured outcome.
public struct BootSimulator: Sendable {
    public var config: BootConfig
    public init(config: BootConfig) { self.config = config }

    /// Powers `device` on and follows resets until an app starts, the boot stops, or
    /// `maxPowerCycles` is reached.
    public func boot(device: inout Device) -> BootOutcome {
        let run = BootRun(config: config, device: device)
        let outcome = run.run()
        device = run.device
        return outcome
    }
}

extension BootSimulator: PowerOnSimulator {
    /// Read-only prediction for `device inspect`: boots a copy.
    public func powerOn(_ device: Device) -> PowerOnReport {
        var copy = device
        let o = boot(device: &copy)
        return PowerOnReport(bootMode: "SPI_FAST_FLASH_BOOT", bootloaderHeaderValid: o.result != .romHalted,
                             detail: o.booted ? "app started from \(o.bootedPartition ?? "?")" : (o.reason ?? o.result.rawValue),
                             flashEncryptionEnabled: o.flashEncryptionEnabled, secureBootEnabled: o.secureBootEnabled)
    }
}

// MARK: - ESP-IDF error codes

enum ESPErr {
    static let fail = -1
    static let invalidArg = 0x102
    static let invalidState = 0x103
    static let invalidSize = 0x104
    static let notFound = 0x105
    static let notSupported = 0x106
    static let imageFlashFail = 0x2001
    static let imageInvalid = 0x2002
}

/// A halt of the whole boot (ROM stop, bootloader reset loop).
struct BootStop: Error {
    var result: BootOutcome.Result
    var reason: String
}

/// One power-on run with its mutable state.
final class BootRun {
    let config: BootConfig
    var sdk: SDKConfig { config.sdkconfig }
    var device: Device
    let layout = EFuseLayout.esp32
    let initialEFuses: EFuseArray
    /// Virtual seconds since the current reset.
    var clock = 0.0
    var totalSeconds = 0.0
    var log: [BootLogLine] = []
    var pendingBatch: [[UInt32]]?
    var encrypted: [EncryptedRegion] = []
    var lastError: Int?
    var rng: any RandomNumberGenerator
    var cipherCache: (key: [UInt32], config: Int, cipher: FlashCipher)?
    var sectorErases = 0
    var pagePrograms = 0
    var powerCycles = 0
    /// Set by the partition scan.
    var otaHasInitialContents = false
    /// The bootloader generation that runs (set when the bootloader stage starts).
    var dialect = BootloaderDialect.v4_4
    var idfVersion: (label: String, source: IDFVersionSource)?

    /// UART at 115200 baud, 10 bits per character.
    static let secondsPerChar = 10.0 / 115_200.0

    init(config: BootConfig, device: Device) {
        self.config = config
        self.device = device
        initialEFuses = device.efuses
        if let seed = config.rngSeed { rng = SplitMix64(seed: seed) } else { rng = SystemRandomNumberGenerator() }
    }

    // MARK: console and clock

    var ms: Int { Int(clock * 1000) }

    func rom(_ text: String) {
        log.append(BootLogLine(source: "rom", text: text, milliseconds: ms))
        clock += Double(text.utf8.count + 2) * Self.secondsPerChar
    }

    func idf(_ level: Character, _ tag: String, _ message: String) {
        let text = "\(level) (\(ms)) \(tag): \(message)"
        log.append(BootLogLine(source: "bootloader", text: text, milliseconds: ms))
        clock += Double(text.utf8.count + 2) * Self.secondsPerChar
    }

    func I(_ tag: String, _ m: String) { idf("I", tag, m) }
    func W(_ tag: String, _ m: String) { idf("W", tag, m) }
    func E(_ tag: String, _ m: String) { idf("E", tag, m) }

    /// Output of ROM helpers called by the bootloader (no tag, no timestamp).
    func plain(_ text: String) {
        log.append(BootLogLine(source: "bootloader", text: text, milliseconds: ms))
        clock += Double(text.utf8.count + 2) * Self.secondsPerChar
    }

    // MARK: eFuses

    func field(_ name: String) -> EFuseField? { layout.field(named: name) }

    func raw(_ name: String) -> UInt64 {
        guard let f = field(name) else { return 0 }
        return device.efuses.value(of: f, layout: layout, raw: true).prefix(8).loadLE(UInt64.self)
    }

    var flashCryptCnt: UInt64 { raw("FLASH_CRYPT_CNT") }
    var flashEncryptionEnabled: Bool { flashCryptCnt.nonzeroBitCount % 2 == 1 }
    var secureBootEnabled: Bool { device.description.chipRevision >= 3 && raw("ABS_DONE_1") != 0 }
    func wrDis(_ bit: Int) -> Bool { device.efuses.isWriteProtected(bit: bit) }
    func rdDis(_ bit: Int) -> Bool { device.efuses.isReadProtected(bit: bit) }
    func blockRaw(_ b: Int) -> [UInt32] { device.efuses.blocks[b] }

    /// Words to program for `name` = `value` (bits set to 1 only).
    func words(_ name: String, _ value: UInt64) -> (Int, [UInt32])? {
        guard let f = field(name) else { return nil }
        var w = [UInt32](repeating: 0, count: layout.blockWordCounts[f.block])
        for i in 0..<min(f.width, 64) where value & (1 << UInt64(i)) != 0 {
            let abs = f.startBit + i
            if abs / 32 < w.count { w[abs / 32] |= 1 << UInt32(abs % 32) }
        }
        return (f.block, w)
    }

    func emptyWords() -> [[UInt32]] { layout.blockWordCounts.map { [UInt32](repeating: 0, count: $0) } }

    func batchBegin() {
        pendingBatch = emptyWords()
        I("efuse", "Batch mode of writing fields is enabled")
    }

    func batchCancel() {
        pendingBatch = nil
        I("efuse", "Batch mode of writing fields is cancelled")
    }

    /// Writes a field (into the open batch, or burns it at once).
    func write(_ name: String, _ value: UInt64) {
        guard let (block, w) = words(name, value) else { return }
        writeBlockWords(block, w)
    }

    func writeBlockWords(_ block: Int, _ w: [UInt32]) {
        if pendingBatch != nil {
            for i in 0..<w.count { pendingBatch?[block][i] |= w[i] }
        } else {
            var all = emptyWords()
            all[block] = w
            burn(all)
        }
    }

    func burn(_ all: [[UInt32]]) {
        device.efuses.program(all: all, layout: layout)
        clock += config.timing.efuseProgram
        device.stats.total.efusePrograms += 1
    }

    func batchCommit() {
        if let b = pendingBatch { burn(b) }
        pendingBatch = nil
        I("efuse", "Batch mode. Prepared fields are committed")
    }

    // MARK: flash

    /// The cipher the flash encryption engine uses (key from BLK1 cells, tweak from FLASH_CRYPT_CONFIG).
    func cipher() -> FlashCipher? {
        let key = blockRaw(1)
        let conf = Int(raw("FLASH_CRYPT_CONFIG"))
        if let c = cipherCache, c.key == key, c.config == conf { return c.cipher }
        guard let c = ESP32FlashKey.cipher(device.efuses, blankIsNone: false) else { return nil }
        cipherCache = (key, conf, c)
        return c
    }

    /// Reads flash as the cache / ROM sees it: decrypted when flash encryption is on.
    func read(_ address: Int, _ length: Int, decrypt: Bool = true) -> [UInt8]? {
        guard length >= 0, address >= 0, let raw = device.flash.read(address, length) else { return nil }
        clock += config.timing.flashRead(bytes: length)
        guard decrypt, flashEncryptionEnabled, length > 0 else { return raw }
        let start = address & ~31
        let end = (address + length + 31) & ~31
        guard end <= device.flash.size, let block = device.flash.read(start, end - start),
              let c = cipher(), let plain = try? c.decrypt(block, at: start) else { return raw }
        return Array(plain[(address - start)..<(address - start + length)])
    }

    /// Erases the sectors of [address, address+length) and programs `data` (encrypting it when
    /// `encrypt`).
    func eraseAndWrite(_ address: Int, _ data: [UInt8], encrypt: Bool) {
        let t = config.timing
        let sectorStart = address & ~(NORFlash.sectorSize - 1)
        let sectorEnd = (address + data.count + NORFlash.sectorSize - 1) & ~(NORFlash.sectorSize - 1)
        if let dt = device.flash.eraseSectors(sectorStart, sectorEnd - sectorStart, timing: t) {
            clock += dt
            sectorErases += (sectorEnd - sectorStart) / NORFlash.sectorSize
        }
        var out = data
        if encrypt, let c = cipher(), address % 32 == 0, data.count % 32 == 0, let e = try? c.encrypt(data, at: address) {
            out = e
        }
        let before = device.flash.pagePrograms
        if let dt = device.flash.program(address, out, timing: t) { clock += dt }
        pagePrograms += device.flash.pagePrograms - before
    }

    /// esp_flash_encrypt_region: each 4 KiB sector read (plaintext), erased, written back encrypted.
    func encryptRegion(name: String, _ address: Int, _ length: Int) {
        let s = NORFlash.sectorSize
        var a = address & ~(s - 1)
        let end = min(device.flash.size, address + length)
        while a < end {
            guard let plain = read(a, s, decrypt: false) else { break }
            eraseAndWrite(a, plain, encrypt: true)
            a += s
        }
        encrypted.append(EncryptedRegion(name: name, offset: address, length: length))
    }

    // MARK: run

    func run() -> BootOutcome {
        var result = BootOutcome.Result.noBootableApp
        var reason: String?
        var booted: (String, Int)?
        var ramEntry: Int?
        var resetReason = "rst:0x1 (POWERON_RESET)"
        while powerCycles < max(1, config.maxPowerCycles) {
            powerCycles += 1
            clock = 0
            do {
                if case .ramImage(let entry) = try romStage(resetReason: resetReason) {
                    result = .ramImageStarted
                    ramEntry = Int(entry)
                    reason = "the ROM started a RAM image at 0x\(hex8(entry)) (not an ESP-IDF bootloader)"
                    break
                }
                switch try bootloaderStage() {
                case .started(let name, let offset):
                    result = .appStarted
                    booted = (name, offset)
                    reason = nil
                case .reset:
                    totalSeconds += clock
                    resetReason = "rst:0x3 (SW_RESET)"
                    result = .bootloaderHalted
                    reason = "still resetting after \(powerCycles) power cycle(s)"
                    clock = 0
                    continue
                }
            } catch let stop as BootStop {
                result = stop.result
                reason = stop.reason
            } catch {
                result = .bootloaderHalted
                reason = "\(error)"
            }
            break
        }
        totalSeconds += clock
        device.stats.total.sectorErases += sectorErases
        device.stats.total.pagePrograms += pagePrograms
        device.stats.total.flashSeconds += totalSeconds
        device.stats.total.virtualSeconds += totalSeconds
        return BootOutcome(result: result, bootedPartition: booted?.0, bootedOffset: booted?.1, reason: reason,
                           errorCode: lastError, resets: powerCycles, efusesBurned: burnedFields(),
                           encryptedRegions: encrypted, sectorErases: sectorErases, pagePrograms: pagePrograms,
                           secureBootEnabled: secureBootEnabled, flashEncryptionEnabled: flashEncryptionEnabled,
                           virtualMilliseconds: Int(totalSeconds * 1000), log: log,
                           idfVersion: idfVersion?.label, idfVersionSource: idfVersion?.source,
                           ramImageEntry: ramEntry)
    }

    func burnedFields() -> [BurnedField] {
        var out: [BurnedField] = []
        for f in layout.fields where f.name != "CUSTOM_MAC_CRC" && f.name != "CUSTOM_MAC" && f.name != "SECURE_VERSION"
            && f.name != "MAC_VERSION" {
            let a = initialEFuses.value(of: f, layout: layout, raw: true)
            let b = device.efuses.value(of: f, layout: layout, raw: true)
            guard a != b else { continue }
            func show(_ v: [UInt8]) -> String {
                if f.width > 64 {
                    // Keys are never shown: only whether the block is programmed.
                    return v.allSatisfy { $0 == 0 } ? "empty" : (f.block == 1 ? "programmed (secret)" : v.hexString)
                }
                return "0x" + String(v.prefix(8).loadLE(UInt64.self), radix: 16)
            }
            out.append(BurnedField(name: f.name, before: show(a), after: show(b)))
        }
        return out
    }
}


func hex8(_ v: some BinaryInteger) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: max(0, 8 - s.count)) + s
}

func hex2(_ v: some BinaryInteger) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: max(0, 2 - s.count)) + s
}

func padLeft(_ s: String, _ n: Int) -> String { String(repeating: " ", count: max(0, n - s.count)) + s }
func padRight(_ s: String, _ n: Int) -> String { s + String(repeating: " ", count: max(0, n - s.count)) }
