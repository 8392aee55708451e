import EFuse
import ESPCore
import FlashEncryption
import VirtualDevice

/// The one value the boot phases pass along: the chip (flash, eFuses), the console, the virtual
/// clock and what the run has done so far. Each phase (``ROMPhase``, ``BootloaderPhase``,
/// ``ImageLoad``, ``SecureBootEnablePhase``, ``FlashEncryptionEnablePhase``) is a group of
/// functions over `inout BootState`; ``BootDriver`` sequences them and follows resets.
///
/// The primitives here are what the chip offers every phase: console output (this file), eFuse
/// reads and burns (`BootState+EFuses.swift`), flash reads and writes through the encryption
/// engine (`BootState+Flash.swift`).
struct BootState {
    let config: BootConfig
    var sdk: SDKConfig { config.sdkconfig }
    var device: Device
    let layout = EFuseLayout.esp32
    /// The chip's boot facts (ROM wording, bootloader offset, eFuse model).
    let chip: BootChip
    /// The eFuses at power-on, for the outcome's list of burned fields.
    let initialEFuses: EFuseArray
    /// The S3/C3 eFuse cells at power-on (nil on the ESP32).
    let initialCells: EFuseBlockWords?

    // Virtual time.
    /// Virtual seconds since the current reset.
    var clock = 0.0
    /// Virtual seconds of the earlier power cycles.
    var totalSeconds = 0.0
    var powerCycles = 0

    // What the run produced.
    var log: [BootLogLine] = []
    var encrypted: [EncryptedRegion] = []
    var lastError: Int?
    var sectorErases = 0
    var pagePrograms = 0

    // Chip internals.
    /// eFuse words collected by an open batch (`esp_efuse_batch_write_begin`), nil outside one.
    var pendingBatch: [[UInt32]]?
    var rng: any RandomNumberGenerator
    var cipherCache: (key: [UInt32], config: Int, cipher: FlashCipher)?

    // Bootloader facts (set when the bootloader stage starts).
    /// Set by the OTA selection: otadata holds no valid entry yet and OTA 0 is tried.
    var otaHasInitialContents = false
    /// The bootloader generation that runs.
    var dialect = BootloaderDialect.v4_4
    var idfVersion: (label: String, source: IDFVersionSource)?

    /// UART at 115200 baud, 10 bits per character.
    static let secondsPerChar = 10.0 / 115_200.0

    init(config: BootConfig, device: Device) {
        self.config = config
        self.device = device
        initialEFuses = device.efuses
        chip = BootChip.of(device)
        initialCells = device.cells
        if let seed = config.rngSeed { rng = SplitMix64(seed: seed) } else { rng = SystemRandomNumberGenerator() }
    }

    // MARK: console and clock

    /// Milliseconds since the current reset (the IDF log timestamp).
    var ms: Int { Int(clock * 1000) }

    /// A line printed by the ROM.
    mutating func rom(_ text: String) {
        emit(source: "rom", text)
    }

    /// An ESP-IDF log line: `L (ms) tag: message`.
    mutating func idf(_ level: Character, _ tag: String, _ message: String) {
        emit(source: "bootloader", "\(level) (\(ms)) \(tag): \(message)")
    }

    mutating func I(_ tag: String, _ m: String) { idf("I", tag, m) }
    mutating func W(_ tag: String, _ m: String) { idf("W", tag, m) }
    mutating func E(_ tag: String, _ m: String) { idf("E", tag, m) }

    /// Output of ROM helpers called by the bootloader (no tag, no timestamp).
    mutating func plain(_ text: String) {
        emit(source: "bootloader", text)
    }

    /// Appends a line stamped with the current time, then advances the clock by the time the
    /// UART takes to send it (text and CR LF).
    private mutating func emit(source: String, _ text: String) {
        log.append(BootLogLine(source: source, text: text, milliseconds: ms))
        clock += Double(text.utf8.count + 2) * Self.secondsPerChar
    }
}
