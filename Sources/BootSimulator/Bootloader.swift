import ESPCore
import FlashEncryption
import ImageFormat
import Partitions

/// The ESP-IDF second-stage bootloader (v4.4 or v5.x behaviour and wording, per
/// ``BootloaderDialect``): flash info, partition
/// table, OTA selection, app load with signature check, Secure Boot V2 enablement, flash
/// encryption first boot.
extension BootRun {
    enum StageEnd {
        case started(String, Int)
        case reset
    }

    struct BootState {
        var table: [PartitionEntry] = []
        var ota: [Int: PartitionEntry] = [:]
        var factory: PartitionEntry?
        var test: PartitionEntry?
        var otadata: PartitionEntry?
        var appCount: Int { ota.count }
    }

    static let factoryIndex = -1
    static let testIndex = -2

    func bootloaderStage() throws -> StageEnd {
        otaHasInitialContents = false
        let header = read(0x1000, 24) ?? [UInt8](repeating: 0, count: 24)
        // v5.2+ bootloaders carry a descriptor at the start of their first (DRAM) segment.
        let resolved = IDFVersion.resolve(configured: config.idfVersion, descriptor: read(0x1000 + 24 + 8, BootloaderDescriptor.size),
                                          sdkconfig: sdk.idfVersion)
        dialect = BootloaderDialect.of(resolved.version)
        idfVersion = (resolved.version.label, resolved.source)
        I("boot", "ESP-IDF \(resolved.version.label) 2nd stage bootloader")
        let descriptorTime: String?
        switch dialect.compileTime {
        case .timeOnly: descriptorTime = resolved.descriptor?.dateTime.split(separator: " ").last.map(String.init)
        case .dateAndTime: descriptorTime = resolved.descriptor?.dateTime
        }
        I("boot", "compile time \(config.compileTime ?? descriptorTime ?? dialect.defaultCompileTime)")
        if dialect.multicoreLine { I("boot", "Multicore bootloader") }
        switch dialect.chipRevisionFormat {
        case .major: I("boot", "chip revision: \(device.description.chipRevision)")
        case .majorMinor: I("boot", "chip revision: v\(device.description.chipRevision).0")
        }
        let speeds: [UInt8: String] = [0x0: "40MHz", 0x1: "26.7MHz", 0x2: "20MHz", 0xF: "80MHz"]
        I("boot.esp32", "SPI Speed      : \(speeds[header[3] & 0x0F] ?? "40MHz")")
        let modes = ["QIO", "QOUT", "DIO", "DOUT", "FAST READ", "SLOW READ"]
        I("boot.esp32", "SPI Mode       : \(header[2] < 6 ? modes[Int(header[2])] : "SLOW READ")")
        let sizes: [UInt8: String] = [0x00: "1MB", 0x10: "2MB", 0x20: "4MB", 0x30: "8MB", 0x40: "16MB"]
        I("boot.esp32", "SPI Flash Size : \(sizes[header[3] & 0xF0] ?? "Unknown")")
        I("boot", "Enabling RNG early entropy source...")

        guard let bs = loadPartitionTable() else {
            E("boot", "load partition table error!")
            throw BootStop(result: .bootloaderHalted, reason: "the partition table at 0x\(String(sdk.partitionTableOffset, radix: 16)) is invalid (the chip resets and retries forever)")
        }
        let start = selectBootIndex(bs)
        return try loadBootImage(bs, startIndex: start)
    }

    // MARK: partition table

    func usage(_ e: PartitionEntry) -> String {
        switch e.type {
        case PartitionEntry.Kind.app:
            if e.subtype == PartitionEntry.AppSubtype.factory { return "factory app" }
            if e.subtype == PartitionEntry.AppSubtype.test { return "test app" }
            if e.subtype >= 0x10 && e.subtype < 0x20 { return "OTA app" }
            return "Unknown app"
        case PartitionEntry.Kind.data:
            switch e.subtype {
            case PartitionEntry.DataSubtype.ota: return "OTA data"
            case PartitionEntry.DataSubtype.phy: return "RF data"
            case PartitionEntry.DataSubtype.nvs: return "WiFi data"
            case PartitionEntry.DataSubtype.nvsKeys: return "NVS keys"
            case PartitionEntry.DataSubtype.efuse: return "efuse"
            default: return "Unknown data"
            }
        default:
            return "unknown"
        }
    }

    /// Reads and verifies the table as the bootloader does (through decryption when on).
    func parseTable() -> (entries: [PartitionEntry]?, error: String?) {
        guard let bytes = read(sdk.partitionTableOffset, PartitionTable.maxLength) else {
            return (nil, "partition table lies beyond the end of flash")
        }
        if bytes[0] == 0xFF && bytes[1] == 0xFF { return ([], nil) }
        do {
            let parsed = try PartitionTable.parse(binary: bytes, verifyMD5: true)
            return (parsed.table.entries, nil)
        } catch {
            if bytes[0] != 0xAA || bytes[1] != 0x50 {
                return (nil, "partition 0 invalid magic number 0x\(String(UInt16(bytes[0]) | UInt16(bytes[1]) << 8, radix: 16))")
            }
            return (nil, error.diagnostic.message)
        }
    }

    func loadPartitionTable() -> BootState? {
        let (entries, problem) = parseTable()
        guard let entries else {
            E("flash_parts", problem ?? "partition table invalid")
            E("boot", "Failed to verify partition table")
            return nil
        }
        I("boot", "Partition Table:")
        I("boot", "## Label            Usage          Type ST Offset   Length")
        var bs = BootState(table: entries)
        for (i, e) in entries.enumerated() {
            if e.type == PartitionEntry.Kind.app {
                if e.subtype == PartitionEntry.AppSubtype.factory { bs.factory = e }
                else if e.subtype == PartitionEntry.AppSubtype.test { bs.test = e }
                else if e.subtype >= 0x10 && e.subtype < 0x20 { bs.ota[Int(e.subtype & 0x0F)] = e }
            } else if e.type == PartitionEntry.Kind.data && e.subtype == PartitionEntry.DataSubtype.ota {
                bs.otadata = e
            }
            I("boot", "\(padLeft(String(i), 2)) \(padRight(e.name, 16)) \(padRight(usage(e), 16)) \(hex2(e.type)) \(hex2(e.subtype)) \(hex8(e.offset)) \(hex8(e.size))")
        }
        I("boot", "End of partition table")
        return bs
    }

    // MARK: OTA selection

    func selectBootIndex(_ bs: BootState) -> Int {
        guard let od = bs.otadata else { return Self.factoryIndex }
        guard let bytes = read(Int(od.offset), min(Int(od.size), Otadata.size)),
              let parsed = try? Otadata.parse(bytes) else { return Self.factoryIndex }
        switch parsed.boot(otaAppCount: bs.appCount, hasFactory: bs.factory != nil) {
        case .ota(let n):
            return n
        case .factory, .firstOTA:
            if bs.factory != nil {
                I("boot", "Defaulting to factory image")
                return Self.factoryIndex
            }
            I("boot", "No factory image, trying OTA 0")
            otaHasInitialContents = true
            return 0
        case .invalidFallback(let hasFactory):
            idf(dialect.otadataInvalidLevel, "boot", hasFactory ? "ota data partition invalid, falling back to factory"
                : "ota data partition invalid and no factory, will try all partitions")
            return Self.factoryIndex
        }
    }

    func partition(_ bs: BootState, _ index: Int) -> PartitionEntry? {
        switch index {
        case Self.factoryIndex: return bs.factory
        case Self.testIndex: return bs.test
        default: return bs.ota[index]
        }
    }

    func logInvalid(_ index: Int) {
        switch index {
        case Self.factoryIndex: E("boot", "Factory app partition is not bootable")
        case Self.testIndex: E("boot", "Factory test app partition is not bootable")
        default: E("boot", "OTA app partition slot \(index) is not bootable")
        }
    }

    func loadBootImage(_ bs: BootState, startIndex: Int) throws -> StageEnd {
        var order: [Int] = []
        if startIndex >= Self.factoryIndex {
            order += Array(stride(from: startIndex, through: Self.factoryIndex, by: -1))
        }
        let maxSlot = (bs.ota.keys.max() ?? -1)
        if startIndex + 1 <= maxSlot { order += Array((startIndex + 1)...maxSlot) }
        for index in order {
            guard let part = partition(bs, index), part.size > 0 else { continue }
            if case .success(let image) = loadImage(at: Int(part.offset), partitionSize: Int(part.size), mode: .load) {
                I("boot", "Loaded app from partition at offset 0x\(String(part.offset, radix: 16))")
                setActualOTASeq(bs, index)
                if let end = try loadImageAndStart(image, bs) {
                    if case .started = end { return .started(part.name, Int(part.offset)) }
                    return end
                }
            } else {
                lastError = ESPErr.imageInvalid
            }
            logInvalid(index)
        }
        if let test = bs.test, test.size > 0,
           case .success(let image) = loadImage(at: Int(test.offset), partitionSize: Int(test.size), mode: .load) {
            I("boot", "Loaded app from partition at offset 0x\(String(test.offset, radix: 16))")
            W("boot", dialect.testAppFallback)
            if let end = try loadImageAndStart(image, bs) {
                if case .started = end { return .started(test.name, Int(test.offset)) }
                return end
            }
        }
        E("boot", "No bootable app partitions in the partition table")
        throw BootStop(result: .noBootableApp, reason: "no app partition could be booted (the chip resets and retries forever)")
    }

    func setActualOTASeq(_ bs: BootState, _ index: Int) {
        guard index > Self.factoryIndex, otaHasInitialContents, let od = bs.otadata else { return }
        let seq = UInt32(index + 1)
        let entry = Otadata.entry(sequence: seq, state: .valid)
        eraseAndWrite(Int(od.offset), entry, encrypt: flashEncryptionEnabled)
        I("boot", "Set actual ota_seq=\(seq) in otadata[0]")
    }

    /// `load_image`: security first-boot steps, then start. Nil = this app failed (try the next).
    func loadImageAndStart(_ image: LoadedImage, _ bs: BootState) throws -> StageEnd? {
        if sdk.secureBootV2 {
            let err = secureBootV2PermanentlyEnable(app: image)
            if err != 0 {
                lastError = err
                E("boot", "Secure Boot v2 failed (\(err))")
                return nil
            }
        }
        var wasEncrypted = false
        if sdk.flashEncryption {
            I("boot", "Checking flash encryption...")
            wasEncrypted = flashEncryptionEnabled
            let err = flashEncryptCheckAndUpdate(bs)
            if err != 0 {
                lastError = err
                E("boot", "Flash encryption check failed (\(err)).")
                return nil
            }
            if !wasEncrypted && flashEncryptionEnabled {
                I("boot", "Resetting with flash encryption enabled...")
                return .reset
            }
        }
        I("boot", "Disabling RNG early entropy source...")
        return .started("", image.start)
    }

    // MARK: Secure Boot V2

    func secureBootV2PermanentlyEnable(app: LoadedImage) -> Int {
        I("secure_boot_v2", "enabling secure boot v2...")
        if secureBootEnabled {
            I("secure_boot_v2", dialect.secureBootAlreadyEnabled)
            return 0
        }
        if sdk.secureBootRequireAlreadyEnabled {
            E("secure_boot_v2", dialect.secureBootRequireAlreadyEnabled)
            return ESPErr.invalidState
        }
        switch dialect.secureBoot {
        case .esp32V44: return secureBootV2EnableV44(app: app)
        case .sharedV5: return secureBootV2EnableV5(app: app)
        }
    }

    /// What both IDF versions do first when enabling Secure Boot V2: open an eFuse batch, refuse
    /// coding schemes, load and verify the bootloader image. No image: stopped (batch cancelled)
    /// with the error `code`.
    func secureBootEnableStart() -> (boot: LoadedImage?, code: Int) {
        batchBegin()
        let coding = raw("CODING_SCHEME")
        if coding != 0 && coding != 3 {
            E("secure_boot_v2", "No coding schemes are supported in secure boot v2.(Detected scheme: 0x\(String(coding, radix: 16)))")
            batchCancel()
            return (nil, ESPErr.notSupported)
        }
        switch loadImage(at: 0x1000, partitionSize: sdk.partitionTableOffset - 0x1000, mode: .verify) {
        case .failure(let e):
            E("secure_boot_v2", "bootloader image appears invalid! error \(e.code)")
            batchCancel()
            return (nil, e.code)
        case .success(let b):
            return (b, 0)
        }
    }

    /// ESP-IDF v4.4: the ESP32-specific enable path.
    func secureBootV2EnableV44(app: LoadedImage) -> Int {
        let start = secureBootEnableStart()
        guard let boot = start.boot else { return start.code }
        let bootSector = boot.signatureSectorOffset.flatMap { read($0, 4096) } ?? []
        var bootDigest: [UInt8]
        let blk2 = blockRaw(2)
        if !wrDis(8) && !rdDis(1) && blk2.allSatisfy({ $0 == 0 }) {
            guard let d = SignatureCheck.blockKeyDigest(bootSector) else {
                E("secure_boot_v2", "No valid bootloader signature blocks found.")
                batchCancel()
                return ESPErr.fail
            }
            bootDigest = d
            I("secure_boot_v2", "Burning public key hash to efuse")
            var w = [UInt32](repeating: 0, count: 8)
            for i in 0..<8 { w[i] = d[(i * 4)..<(i * 4 + 4)].loadLE(UInt32.self) }
            writeBlockWords(2, w)
        } else {
            if rdDis(1) {
                E("secure_boot_v2", "Secure Boot V2 digest in eFuse BLK2 is read-protected")
                batchCancel()
                return ESPErr.fail
            }
            W("secure_boot_v2", "Using pre-loaded public key digest in eFuse")
            bootDigest = []
            for w in blk2 { bootDigest.appendLE(w) }
        }
        let appSector = app.signatureSectorOffset.flatMap { read($0, 4096) } ?? []
        guard let appDigest = SignatureCheck.blockKeyDigest(appSector) else {
            E("secure_boot_v2", "Application signature block is invalid.")
            batchCancel()
            return ESPErr.fail
        }
        if appDigest != bootDigest {
            E("secure_boot_v2", "Application not signed with a valid private key.")
            batchCancel()
            return ESPErr.fail
        }
        write("WR_DIS", 1 << 8)
        // esp_secure_boot_enable_secure_features (ESP32, V2)
        write("ABS_DONE_1", 1)
        if sdk.allowJTAG { W("secure_boot_v2", "Not disabling JTAG - SECURITY COMPROMISED") } else { write("JTAG_DISABLE", 1) }
        if sdk.allowROMBasic {
            W("secure_boot_v2", "Not disabling ROM BASIC fallback - SECURITY COMPROMISED")
        } else {
            write("CONSOLE_DEBUG_DISABLE", 1)
        }
        if sdk.disableROMDownload { write("UART_DOWNLOAD_DIS", 1) }
        let fePending = sdk.flashEncryption && !flashEncryptionEnabled
        if !sdk.allowEFuseReadDisable && !fePending {
            I("secure_boot_v2", "Prevent read disabling of additional efuses...")
            write("WR_DIS", 1 << 0)
        }
        batchCommit()
        I("secure_boot_v2", "Secure boot permanently enabled")
        return 0
    }

    /// ESP-IDF v5.x: key digests of every valid signature block (ESP32: one), burned with
    /// `esp_efuse_write_keys` when BLOCK2 is unused, matched against the app's, then the ESP32
    /// secure features.
    func secureBootV2EnableV5(app: LoadedImage) -> Int {
        let start = secureBootEnableStart()
        guard let boot = start.boot else { return start.code }
        let blk2 = blockRaw(2)
        // esp_efuse_key_block_unused: empty and neither read- nor write-protected.
        let hasDigest = !(blk2.allSatisfy { $0 == 0 } && !wrDis(8) && !rdDis(1))
        I("secure_boot_v2", "Secure boot digests \(hasDigest ? "already present" : "absent, generating..")")
        var bootDigest: [UInt8]
        if !hasDigest {
            guard let d = keyDigests(of: boot) else {
                E("secure_boot_v2", "No valid bootloader signature blocks found.")
                batchCancel()
                return ESPErr.fail
            }
            I("secure_boot_v2", "1 signature block(s) found appended to the bootloader.")
            I("secure_boot_v2", "Burning public key hash to eFuse")
            // esp_efuse_write_keys: ESP32 BLOCK2 is EFUSE_BLK_KEY1, purpose 3 = SECURE_BOOT_V2;
            // the key block is write-protected with it.
            I("efuse", "Writing EFUSE_BLK_KEY1 with purpose 3")
            var w = [UInt32](repeating: 0, count: 8)
            for i in 0..<8 { w[i] = d[(i * 4)..<(i * 4 + 4)].loadLE(UInt32.self) }
            writeBlockWords(2, w)
            write("WR_DIS", 1 << 8)
            bootDigest = d
        } else {
            if rdDis(1) {
                E("secure_boot_v2", "Key digest (BLK2) read protected, aborting...")
                batchCancel()
                return ESPErr.fail
            }
            if blk2.allSatisfy({ $0 == 0 }) {
                E("secure_boot_v2", "2 eFuse block is empty, aborting...")
                batchCancel()
                return ESPErr.fail
            }
            write("WR_DIS", 1 << 8)
            W("secure_boot_v2", "Using pre-loaded public key digest in eFuse")
            bootDigest = []
            for w in blk2 { bootDigest.appendLE(w) }
        }
        guard let appDigest = keyDigests(of: app) else {
            E("secure_boot_v2", "No valid applications signature blocks found.")
            batchCancel()
            return ESPErr.fail
        }
        I("secure_boot_v2", "1 signature block(s) found appended to the app.")
        guard appDigest == bootDigest else {
            E("secure_boot_v2", "No application key digest matches the bootloader key digest.")
            batchCancel()
            return ESPErr.fail
        }
        I("secure_boot_v2", "Application key(0) matches with bootloader key(0).")
        I("secure_boot_v2", "blowing secure boot efuse...")
        // esp_secure_boot_enable_secure_features (ESP32, V2)
        let tag = dialect.secureBootFeaturesTag
        write("ABS_DONE_1", 1)
        if sdk.allowJTAG { W(tag, "Not disabling JTAG - SECURITY COMPROMISED") } else {
            I(tag, "Disable JTAG...")
            write("JTAG_DISABLE", 1)
        }
        if sdk.allowROMBasic { W(tag, "Not disabling ROM BASIC fallback - SECURITY COMPROMISED") } else {
            I(tag, "Disable ROM BASIC interpreter fallback...")
            write("CONSOLE_DEBUG_DISABLE", 1)
        }
        if sdk.disableROMDownload {
            I(tag, "Disable ROM Download mode...")
            write("UART_DOWNLOAD_DIS", 1)
        } else {
            W(tag, "UART ROM Download mode kept enabled - SECURITY COMPROMISED")
        }
        if sdk.allowEFuseReadDisable {
            W(tag, "Allowing read disabling of additional efuses - SECURITY COMPROMISED")
        } else if !sdk.flashEncryption || flashEncryptionEnabled {
            // With flash encryption still to come, RD_DIS stays writable until its key is protected.
            I(tag, "Prevent read disabling of additional efuses...")
            write("WR_DIS", 1 << 0)
        }
        batchCommit()
        I("secure_boot_v2", "Secure boot permanently enabled")
        return 0
    }

    /// `s_calculate_image_public_key_digests` for an image that already verified: the digest of
    /// the key in signature block 0 (nil when the sector holds no valid block), with its log line.
    func keyDigests(of image: LoadedImage) -> [UInt8]? {
        let sector = image.signatureSectorOffset.flatMap { read($0, 4096) } ?? []
        guard let d = SignatureCheck.blockKeyDigest(sector) else { return nil }
        clock += 0.008
        I("secure_boot_v2", "Digests successfully calculated, 1 valid signatures (image offset 0x\(String(image.start, radix: 16)))")
        return d
    }

    // MARK: flash encryption

    func flashEncryptCheckAndUpdate(_ bs: BootState) -> Int {
        let cnt = flashCryptCnt
        if flashEncryptionEnabled {
            let left = (wrDis(2) || cnt == 0x7F) ? 0 : (7 - cnt.nonzeroBitCount) / 2
            I("flash_encrypt", "flash encryption is enabled (\(left) plaintext flashes left)")
            return 0
        }
        if sdk.flashEncryptionRequireAlreadyEnabled {
            E("flash_encrypt", "flash encryption is not enabled, and SECURE_FLASH_REQUIRE_ALREADY_ENABLED is set, refusing to boot.")
            return ESPErr.invalidState
        }
        if wrDis(2) || cnt == 0x7F {
            E("flash_encrypt", "Cannot re-encrypt data (FLASH_CRYPT_CNT 0x\(hex2(cnt)) write disabled \(wrDis(2) ? 1 : 0)")
            return ESPErr.fail
        }
        if cnt == 0 {
            let err = initialiseFlashEncryption()
            if err != 0 {
                E("flash_encrypt", "Initialization of Flash Encryption key failed (\(err))")
                return err
            }
        }
        // Bootloader.
        switch loadImage(at: 0x1000, partitionSize: sdk.partitionTableOffset - 0x1000, mode: .verify) {
        case .success(let b):
            if b.length > sdk.partitionTableOffset - 0x1000 {
                E("flash_encrypt", "Bootloader is too large to fit Secure Boot V2 signature sector and partition table (configured offset 0x\(String(sdk.partitionTableOffset, radix: 16)))")
                return ESPErr.invalidSize
            }
            encryptRegion(name: "bootloader", 0x1000, b.length)
            I("flash_encrypt", "bootloader encrypted successfully")
        case .failure:
            W("flash_encrypt", "no valid bootloader was found")
            return ESPErr.notFound
        }
        // Partition table.
        guard let entries = parseTable().entries else {
            E("flash_encrypt", "Failed to read partition table data")
            return ESPErr.invalidState
        }
        encryptRegion(name: "partition table", sdk.partitionTableOffset, EncryptionRules.partitionTableSize)
        I("flash_encrypt", "partition table encrypted and loaded successfully")
        // Partitions, by the shared rule set.
        for (i, p) in entries.enumerated() {
            let (expectation, _) = EncryptionRules.expectation(for: p)
            var length = Int(p.size)
            let encrypt: Bool
            switch expectation {
            case .never:
                encrypt = false
            case .always:
                encrypt = true
            case .ifValidImage:
                if case .success(let img) = loadImage(at: Int(p.offset), partitionSize: Int(p.size), mode: .verify) {
                    encrypt = true
                    if sdk.encryptOnlyImageLength { length = img.length }
                } else {
                    encrypt = false
                }
            case .ifValidPartitionTable:
                if let bytes = read(Int(p.offset), PartitionTable.maxLength),
                   let t = try? PartitionTable.parse(binary: bytes, verifyMD5: true), !t.table.entries.isEmpty {
                    encrypt = true
                } else {
                    encrypt = false
                }
            }
            guard encrypt else { continue }
            I("flash_encrypt", "Encrypting partition \(i) at offset 0x\(String(p.offset, radix: 16)) (length 0x\(String(length, radix: 16)))...")
            encryptRegion(name: p.name, Int(p.offset), length)
            I("flash_encrypt", "Done encrypting")
        }
        // Enable: development → one more bit; release → all bits (0x7F).
        if sdk.releaseMode {
            if dialect.logsPermanentCryptCnt { I("flash_encrypt", "Setting CRYPT_CNT for permanent encryption") }
            write("FLASH_CRYPT_CNT", 0x7F)
        } else {
            var bit: UInt64 = 1
            while bit < 0x80 && cnt & bit != 0 { bit <<= 1 }
            write("FLASH_CRYPT_CNT", bit)
        }
        I("flash_encrypt", "Flash encryption completed")
        return 0
    }

    func initialiseFlashEncryption() -> Int {
        batchBegin()
        let coding = raw("CODING_SCHEME")
        if coding == 2 {
            E("flash_encrypt", "Unknown/unsupported CODING_SCHEME value 0x\(String(coding, radix: 16))")
            batchCancel()
            return ESPErr.notSupported
        }
        let blk1 = blockRaw(1)
        if blk1.allSatisfy({ $0 == 0 }) && !rdDis(0) && !wrDis(7) {
            I("flash_encrypt", "Generating new flash encryption key...")
            var key = [UInt32](repeating: 0, count: 8)
            let n = coding == 1 ? 6 : 8
            for i in 0..<n { key[i] = UInt32(truncatingIfNeeded: rng.next()) }
            switch dialect.flashEncryptionKey {
            case .block1V44:
                writeBlockWords(1, key)
                I("flash_encrypt", "Read & write protecting new key...")
            case .keyPurposeV5:
                // esp_efuse_write_keys: BLOCK1 is EFUSE_BLK_KEY0, purpose 2 = FLASH_ENCRYPTION;
                // read and write protection come with it.
                I("efuse", "Writing EFUSE_BLK_KEY0 with purpose 2")
                writeBlockWords(1, key)
            }
            write("WR_DIS", 1 << 7)
            write("RD_DIS", 1 << 0)
        } else if rdDis(0) && wrDis(7) {
            switch dialect.flashEncryptionKey {
            case .block1V44: I("flash_encrypt", "Using pre-existing key in efuse")
            case .keyPurposeV5: I("flash_encrypt", "Using pre-loaded flash encryption key in efuse")
            }
        } else {
            switch dialect.flashEncryptionKey {
            case .block1V44: E("flash_encrypt", "Flash encryption key has to be either unset or both read and write protected")
            case .keyPurposeV5: E("flash_encrypt", "Invalid key state, check read&write protection for key and keypurpose(if exists)")
            }
            batchCancel()
            return ESPErr.invalidState
        }
        let cryptConfig = raw("FLASH_CRYPT_CONFIG")
        if cryptConfig == 0 || dialect.cryptConfigAlwaysLogged {
            I("flash_encrypt", "Setting CRYPT_CONFIG efuse to 0xF")
        }
        if cryptConfig == 0 {
            write("FLASH_CRYPT_CONFIG", 0xF)
        } else if cryptConfig != 0xF && dialect.cryptConfigAlwaysLogged {
            E("flash_encrypt", "EFUSE_ENCRYPT_CONFIG should be set 0xF but it is 0x\(String(cryptConfig, radix: 16))")
        }
        // Hardening eFuses, in the bootloader's order: (kept by sdkconfig?, warning, info, field).
        let hardening: [(Bool, String, String, String)] = [
            (sdk.uartAllowEncrypt, "Not disabling UART bootloader encryption",
             "Disable UART bootloader encryption...", "DISABLE_DL_ENCRYPT"),
            (sdk.uartAllowDecrypt, "Not disabling UART bootloader decryption - SECURITY COMPROMISED",
             "Disable UART bootloader decryption...", "DISABLE_DL_DECRYPT"),
            (sdk.uartAllowCache, "Not disabling UART bootloader MMU cache - SECURITY COMPROMISED",
             "Disable UART bootloader MMU cache...", "DISABLE_DL_CACHE"),
            (sdk.allowJTAG, "Not disabling JTAG - SECURITY COMPROMISED", "Disable JTAG...", "JTAG_DISABLE"),
            (sdk.allowROMBasic, "Not disabling ROM BASIC fallback - SECURITY COMPROMISED",
             "Disable ROM BASIC interpreter fallback...", "CONSOLE_DEBUG_DISABLE"),
        ]
        for (kept, warning, info, field) in hardening {
            if kept { W("flash_encrypt", warning) } else {
                I("flash_encrypt", info)
                write(field, 1)
            }
        }
        if sdk.secureBootV2 && !sdk.allowEFuseReadDisable {
            if dialect.flashEncryptionLogsReadDisableLock { I("flash_encrypt", "Prevent read disabling of additional efuses...") }
            write("WR_DIS", 1 << 0)
        }
        if !sdk.skipWriteProtectCache { write("WR_DIS", 1 << 3) }
        batchCommit()
        return 0
    }
}
