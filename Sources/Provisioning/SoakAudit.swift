import Crypto
import EFuse
import ESPCore
import FlashEncryption
import Foundation
import KeyCustody
import NVS
import Partitions
import Registry
import SecureBoot
import VirtualDevice

/// The end-of-drill audit of a soak run (`scripts/soak-provision`): every virtual device's chip
/// (its state folder: flash and eFuses) is compared with the job's plan and with the registry,
/// the identity pool is accounted for, and the work folders are searched for the devices' key
/// bytes. Reads only: device folders are read as files (``DeviceStore/load()`` would tidy them).
/// The ESP32 is read as its eFuse array (BLOCK1 key, BLOCK2 digest); an ESP32-S3/C3 through its
/// field map (efuse.bin as the registers show it, efuse-protected.bin for read-protected key
/// blocks), its flash decrypted with the XTS key its engine uses, its eFuses checked against what
/// ``FieldMapSecurityFlow`` must leave.
///
/// Figures that must be zero: silent wrong writes (a device recorded `provisioned` whose flash or
/// eFuses differ from the plan), identities claimed twice, identities lost, records in an
/// inconsistent state, key bytes found outside chip and escrow. Problem lines name the device and
/// what differs, never key material.
public struct SoakAudit: Sendable {
    public let job: ProvisioningJob
    public let registry: any DeviceRegistry
    /// Secure Boot V2 on (ABS_DONE_1 and the BLOCK2 digest are checked).
    public var secureBoot: Bool
    /// The line's escrow private key: the newest sealed blobs of every provisioned device must
    /// open to the keys the chip holds (nil: not checked).
    public var escrowKey: EscrowPrivateKey?

    public init(job: ProvisioningJob, registry: any DeviceRegistry, secureBoot: Bool) {
        self.job = job; self.registry = registry; self.secureBoot = secureBoot
    }

    public struct Figures: Sendable, Codable, Equatable {
        public var devices = 0
        public var provisioned = 0
        public var failedCleanly = 0
        /// Failure reason (step and message, shortened) → devices.
        public var failureReasons: [String: Int] = [:]
        public var silentWrongWrites = 0
        public var identitiesClaimedTwice = 0
        public var identitiesLost = 0
        /// Held by a device recorded `failed` (kept for its resume or RMA; not lost).
        public var identitiesHeldByFailed = 0
        public var identitiesFree = 0
        public var poolRows = 0
        public var inconsistentRecords = 0
        public var keyBytesOutside = 0
        /// Provisioned devices whose newest escrowed keys are missing or are not the chip's (checked
        /// with the escrow private key).
        public var escrowNotRecovering = 0
        public var escrowChecked = 0
        /// Boards of the drill the line refused (registry `refused` events): a device of this line
        /// that a resume no longer accepts.
        public var refusedBoards = 0
        /// Distinct keys searched for (flash-encryption keys and NVS XTS keys of the devices).
        public var keysSearched = 0
        public var filesScanned = 0
        public var bytesScanned = 0
        /// One line per problem found (device, check, what differs); at most 200.
        public var problems: [String] = []

        public var mustBeZeroHold: Bool {
            silentWrongWrites == 0 && identitiesClaimedTwice == 0 && identitiesLost == 0
                && inconsistentRecords == 0 && keyBytesOutside == 0 && escrowNotRecovering == 0 && refusedBoards == 0
        }
    }

    /// One device as found in its state folder.
    struct Chip {
        var folder: String
        var mac: String
        /// `esp32`, `esp32s3`, `esp32c3` (device.json).
        var chip: String
        var flash: [UInt8]
        /// ESP32: the eFuse array (blank for an S3/C3).
        var efuses: EFuseArray
        /// ESP32-S3/C3: the chip's eFuses through its field map.
        var fieldMap: FieldMapFuses?
        /// The flash-encryption key as the chip's engine uses it (key-file order); nil: none burned.
        var flashKey: [UInt8]?
        /// The engine's cipher (ESP32: BLOCK1 with FLASH_CRYPT_CONFIG; S3/C3: the XTS key block(s)).
        var cipher: FlashCipher?
    }

    /// An S3/C3's eFuses: `shown` as its read registers show them (efuse.bin: read-protected
    /// blocks as zero, what the line reads and records), `cells` the fuses themselves (the
    /// hidden blocks from efuse-protected.bin).
    struct FieldMapFuses {
        var map: EFuseFieldMap
        var shown: EFuseBlockWords
        var cells: EFuseBlockWords
    }

    /// Audits the devices in `deviceFolders`; searches every regular file under `scanPaths` for
    /// their keys (the chip's own `flash.bin` and `efuse.bin` excepted). `poolRows`: how many
    /// identities the values CSV holds (rows missing from the pool count as lost).
    public func run(deviceFolders: [String], scanPaths: [String], poolRows: Int?) async throws -> Figures {
        var f = Figures()
        var keys: [(label: String, bytes: [UInt8])] = []
        var holders: [String: [String]] = [:]   // identity → MACs
        var accounted = Set<String>()           // identities held by provisioned or failed devices
        var macs = Set<String>()
        func problem(_ text: String) { if f.problems.count < 200 { f.problems.append(text) } }

        for folder in deviceFolders {
            f.devices += 1
            let chip: Chip
            do { chip = try Self.readChip(folder) } catch {
                f.inconsistentRecords += 1
                problem("\(folder): device state unreadable: \(Self.message(error))")
                continue
            }
            macs.insert(chip.mac)
            let cipher = chip.cipher
            if chip.chip != job.chip {
                f.inconsistentRecords += 1
                problem("\(chip.mac): the device is an \(chip.chip), the line provisions \(job.chip)")
                continue
            }
            if let key = chip.flashKey {
                keys.append(("\(chip.mac) flash-encryption key", key))
                if key.count == 64 {  // XTS-AES-256: two key blocks, each searched alone too
                    keys.append(("\(chip.mac) flash-encryption key (first half)", Array(key[0..<32])))
                    keys.append(("\(chip.mac) flash-encryption key (second half)", Array(key[32..<64])))
                }
            }
            if let nvsKeys = nvsKeys(chip, cipher) {
                keys.append(("\(chip.mac) NVS key (XTS 1)", Array(nvsKeys.bytes[0..<32])))
                keys.append(("\(chip.mac) NVS key (XTS 2)", Array(nvsKeys.bytes[32..<64])))
            }
            let identity = try await registry.identity(pool: job.identityPool, mac: chip.mac)
            if let identity { holders[identity.id, default: []].append(chip.mac) }
            guard let record = try await registry.device(mac: chip.mac) else {
                f.inconsistentRecords += 1
                problem("\(chip.mac): no registry record after the drill")
                continue
            }
            let steps = try await registry.steps(mac: chip.mac)
            var recordProblems = steps.filter { $0.outcome == .running }.map { "step \($0.step) #\($0.id) still running" }
            switch record.status {
            case .provisioned:
                f.provisioned += 1
                if let identity { accounted.insert(identity.id) }
                recordProblems += provisionedRecordProblems(record, steps: steps, chip: chip, identity: identity)
                if let escrowKey {
                    f.escrowChecked += 1
                    let bad = try await escrowProblems(chip, cipher: cipher, escrowKey)
                    if !bad.isEmpty {
                        f.escrowNotRecovering += 1
                        for b in bad { problem("\(chip.mac): escrow: \(b)") }
                    }
                }
                let wrong = planProblems(chip, cipher: cipher, identity: identity, record: record)
                if !wrong.isEmpty {
                    f.silentWrongWrites += 1
                    for w in wrong { problem("\(chip.mac): silent wrong write: \(w)") }
                }
            case .failed:
                f.failedCleanly += 1
                if let identity { accounted.insert(identity.id); f.identitiesHeldByFailed += 1 }
                let reason = Self.reasonBucket(record.failure)
                f.failureReasons[reason, default: 0] += 1
                if (record.failure ?? "").isEmpty { recordProblems.append("failed without a reason") }
            case .inProgress:
                recordProblems.append("left in_progress after the drill")
            case .rma:
                recordProblems.append("marked rma (nobody marked it)")
            }
            if !recordProblems.isEmpty {
                f.inconsistentRecords += 1
                for p in recordProblems { problem("\(chip.mac): inconsistent record: \(p)") }
            }
        }

        // Boards the line refused during the drill (each its own device: none should be).
        for event in try await registry.events(mac: nil) where event.kind == "refused" {
            if let mac = event.mac, macs.contains(mac) {
                f.refusedBoards += 1
                problem("\(mac): refused by the line: \(event.detail ?? "")")
            }
        }

        // Records of devices that are not in the drill.
        for record in try await registry.devices() where !macs.contains(record.mac) {
            f.inconsistentRecords += 1
            problem("\(record.mac): a registry record for a device that is not in the drill")
        }

        // The identity pool: every row free, or held by one provisioned or cleanly failed device.
        if job.claimsIdentities {
            let status = try await registry.poolStatus(pool: job.identityPool)
            f.poolRows = status.total
            f.identitiesFree = status.total - status.claimed
            for (id, owners) in holders where owners.count > 1 {
                f.identitiesClaimedTwice += 1
                problem("identity \(id) claimed by \(owners.count) devices: \(owners.sorted().joined(separator: ", "))")
            }
            let unaccounted = status.claimed - accounted.count
            if unaccounted > 0 {
                f.identitiesLost += unaccounted
                problem("\(unaccounted) identities claimed by no provisioned or cleanly failed device of the drill")
            }
            if let poolRows, status.total < poolRows {
                f.identitiesLost += poolRows - status.total
                problem("the pool holds \(status.total) identities, the values CSV \(poolRows)")
            }
        }

        // Key bytes outside the chips (and outside the escrow's sealed blobs, which hold none in clear).
        let scan = KeyScan(keys: keys)
        f.keysSearched = keys.count
        for root in scanPaths {
            for path in Self.files(under: root) {
                let name = (path as NSString).lastPathComponent
                if name == "flash.bin" || name == "efuse.bin" || name == "efuse-protected.bin" {
                    // The chip itself, when the folder is a device's.
                    let dir = (path as NSString).deletingLastPathComponent
                    if FileManager.default.fileExists(atPath: dir + "/device.json") { continue }
                }
                guard let data = FileManager.default.contents(atPath: path) else { continue }
                f.filesScanned += 1
                f.bytesScanned += data.count
                for hit in scan.find(in: [UInt8](data)) {
                    f.keyBytesOutside += 1
                    problem("key bytes outside chip and escrow: \(hit) in \(path)")
                }
            }
        }
        return f
    }

    // MARK: checks

    /// The newest sealed blob of each kind opens (for this MAC and identity) to what the chip holds.
    func escrowProblems(_ chip: Chip, cipher: FlashCipher?, _ key: EscrowPrivateKey) async throws -> [String] {
        guard let store = registry as? any EscrowStore else { return ["the registry cannot hold sealed keys"] }
        let records = try await store.sealedKeys(mac: chip.mac)
        var out: [String] = []
        func check(_ kind: String, _ want: [UInt8]?) {
            guard let want else { return }
            guard let r = records.last(where: { $0.kind == kind }) else { out.append("no sealed \(kind)"); return }
            guard let secret = try? key.unseal(r.sealed, context: EscrowContext(mac: chip.mac, identity: r.identity, kind: kind)) else {
                out.append("the newest sealed \(kind) does not open"); return
            }
            if secret != want { out.append("the newest sealed \(kind) is not the key the chip holds") }
        }
        if job.mode == .host { check(Provisioner.EscrowKind.flashEncryptionKey, chip.flashKey ?? []) }
        if job.encryptNVS, job.claimsIdentities { check(Provisioner.EscrowKind.nvsKeys, nvsKeys(chip, cipher)?.bytes ?? []) }
        return out
    }

    /// The device's NVS keys, from its nvs_keys partition (decrypted with the chip's key when
    /// that partition is encrypted); nil when none were written.
    func nvsKeys(_ chip: Chip, _ cipher: FlashCipher?) -> NVSKeys? {
        guard job.encryptNVS, let part = keysPartition else { return nil }
        let offset = Int(part.offset)
        guard offset + NVSKeys.imageSize <= chip.flash.count else { return nil }
        var bytes = Array(chip.flash[offset..<offset + NVSKeys.imageSize])
        if job.mode == .host, encrypted(offset) {
            guard let cipher, let plain = try? cipher.decrypt(bytes, at: offset) else { return nil }
            bytes = plain
        }
        return try? NVSKeys(file: bytes)
    }

    var keysPartition: PartitionEntry? { job.nvsKeysPartitionEntry }

    /// The pipeline's own rule (``ProvisioningJob/isEncryptedInFlash(_:)``).
    func encrypted(_ offset: Int) -> Bool { job.isEncryptedInFlash(offset) }

    /// Flash against the plan (byte for byte, decrypted with the chip's key; signed images: the
    /// content before the signature sector equal, a valid signature by the key in BLOCK2), bytes
    /// outside the planned regions erased, eFuses as the manifest asks.
    func planProblems(_ chip: Chip, cipher: FlashCipher?, identity: ClaimedIdentity?, record: DeviceRecord) -> [String] {
        var out: [String] = []
        var covered: [Range<Int>] = []
        let host = job.mode == .host
        if host && cipher == nil { out.append(chip.fieldMap == nil ? "no flash-encryption key in BLOCK1" : "no XTS-AES key block") }
        func region(_ offset: Int, _ count: Int, decrypt: Bool) -> [UInt8]? {
            guard offset >= 0, offset + count <= chip.flash.count else { return nil }
            let raw = Array(chip.flash[offset..<offset + count])
            guard decrypt else { return raw }
            return try? cipher?.decrypt(raw, at: offset)
        }
        for image in job.images {
            let enc = host && encrypted(image.offset)
            var expected = image.bytes
            if enc { while expected.count % 32 != 0 { expected.append(0xFF) } }
            covered.append(image.offset..<image.offset + expected.count)
            guard let plain = region(image.offset, expected.count, decrypt: enc) else {
                out.append("\(image.name) at 0x\(String(image.offset, radix: 16)) cannot be read back"); continue
            }
            let signed = secureBoot && (image.name == "bootloader" || image.name == "app")
            if signed, let sector = try? SignedImage.sectorOffset(of: image.bytes) {
                if !Self.same(plain, expected, count: sector) {
                    out.append("\(image.name): content differs from the image at 0x\(String(image.offset + Self.firstDifference(plain, expected), radix: 16))")
                }
                let inspection = SecureBootVerifier.inspect(image: Array(plain[0..<image.bytes.count]), sectorOffset: sector)
                let good = inspection.checks.contains { check in
                    check.digestMatches && check.signatureValid == true
                        && (job.secureBootDigest.map { check.block.keyDigest == $0 } ?? true)
                }
                if !good { out.append("\(image.name): no valid signature block by the Secure Boot key") }
            } else if plain.count != expected.count || !Self.same(plain, expected, count: plain.count) {
                out.append("\(image.name) differs from the plan at 0x\(String(image.offset + Self.firstDifference(plain, expected), radix: 16))")
            }
        }
        if job.claimsIdentities, let part = job.partition(named: job.nvsPartition) {
            let offset = Int(part.offset), size = Int(part.size)
            covered.append(offset..<offset + size)
            var key: NVSKeys?
            if job.encryptNVS, let kp = keysPartition {
                key = nvsKeys(chip, cipher)
                let ko = Int(kp.offset)
                covered.append(ko..<ko + NVSKeys.imageSize)
                if let key, let plain = region(ko, NVSKeys.imageSize, decrypt: host && encrypted(ko)), plain != key.image {
                    out.append("nvs_keys partition differs from the keys image")
                }
                if key == nil { out.append("no valid NVS keys in the nvs_keys partition") }
            }
            if let identity, let device = job.identities.first(where: { $0.id == identity.id }) {
                if !job.encryptNVS || key != nil {
                    do {
                        let image = try NVSGenerator.generate(items: try NVSCSV.items(device.rows),
                                                              options: NVSImageOptions(size: size, key: key?.bytes))
                        if let raw = region(offset, size, decrypt: false), raw != image.bytes {
                            out.append("NVS partition is not identity \(identity.id)'s values (differs at 0x\(String(offset + Self.firstDifference(raw, image.bytes), radix: 16)))")
                        }
                    } catch {
                        out.append("NVS of identity \(identity.id) cannot be rebuilt: \(Self.message(error))")
                    }
                }
            } else {
                out.append("no identity (or one not in the values CSV) for a device recorded provisioned")
            }
        }
        // Nothing outside the plan was written (a fresh device's flash is erased).
        covered.sort { $0.lowerBound < $1.lowerBound }
        var at = 0
        for r in covered + [chip.flash.count..<chip.flash.count] {
            if at < r.lowerBound, let i = Self.firstNotErased(chip.flash, at..<r.lowerBound) {
                out.append("flash outside the planned regions written at 0x\(String(i, radix: 16))")
                break
            }
            at = max(at, r.upperBound)
        }
        // eFuses as the manifest asks.
        if let fuses = chip.fieldMap { return out + fieldMapEFuseProblems(fuses) }
        let e = chip.efuses
        if secureBoot {
            if Provisioner.int(e, "ABS_DONE_1") != 1 { out.append("ABS_DONE_1 is not set") }
            if let want = job.secureBootDigest {
                var got: [UInt8] = []
                for w in e.blocks[2] { for i in 0..<4 { got.append(UInt8(truncatingIfNeeded: w >> (8 * UInt32(i)))) } }
                if got != want { out.append("BLOCK2 does not hold the Secure Boot key digest") }
            }
        }
        if job.mode != .none {
            if Provisioner.int(e, "FLASH_CRYPT_CNT").nonzeroBitCount % 2 == 0 { out.append("FLASH_CRYPT_CNT is even (encryption off)") }
            if !e.isReadProtected(bit: 0) { out.append("BLOCK1 is not read-protected") }
            if !e.isWriteProtected(bit: 7) { out.append("BLOCK1 is not write-protected") }
        }
        if host {
            let want: UInt64 = job.release ? 127 : 1
            if Provisioner.int(e, "FLASH_CRYPT_CNT") != want { out.append("FLASH_CRYPT_CNT is \(Provisioner.int(e, "FLASH_CRYPT_CNT")), the plan burns \(want)") }
            if Provisioner.int(e, "FLASH_CRYPT_CONFIG") != 15 { out.append("FLASH_CRYPT_CONFIG is not 0xF") }
        }
        let layout = EFuseLayout.esp32
        for name in job.finalBurn {
            guard let field = layout.field(named: name.uppercased()), field.width <= 32 else { continue }
            let all = field.width == 32 ? UInt64(UInt32.max) : (UInt64(1) << UInt64(field.width)) - 1
            if e.integer(field, layout: layout) != all { out.append("\(field.name) is not burned") }
        }
        for name in job.finalWriteProtect {
            guard let field = layout.field(named: name.uppercased()), let bit = field.writeProtect else { continue }
            if !e.isWriteProtected(bit: bit) { out.append("\(field.name) is not write-protected") }
        }
        return out
    }

    /// S3/C3 eFuses as ``FieldMapSecurityFlow`` must leave them: SECURE_BOOT_EN and a
    /// SECURE_BOOT_DIGESTn key block holding the key digest; SPI_BOOT_CRYPT_CNT odd (host mode: 1
    /// development, 0b111 release) with the XTS key block(s) read- and write-protected; every
    /// `[efuse] burn` field fully burned, every `write_protect` set.
    func fieldMapEFuseProblems(_ fuses: FieldMapFuses) -> [String] {
        var out: [String] = []
        let map = fuses.map, cells = fuses.cells
        func int(_ name: String) -> UInt64 { map.field(named: name).map { cells.integer($0) } ?? 0 }
        let blocks = EFuseFieldMapSummary(words: fuses.shown, map: map).keyBlocks
        if secureBoot {
            if int("SECURE_BOOT_EN") != 1 { out.append("SECURE_BOOT_EN is not set") }
            if let want = job.secureBootDigest.map(Provisioner.hex),
               !blocks.contains(where: { $0.purposeName.hasPrefix("SECURE_BOOT_DIGEST") && $0.digest == want }) {
                out.append("no SECURE_BOOT_DIGESTn key block holds the Secure Boot key digest")
            }
        }
        if job.mode != .none {
            let cnt = int("SPI_BOOT_CRYPT_CNT")
            if cnt.nonzeroBitCount % 2 == 0 { out.append("SPI_BOOT_CRYPT_CNT is even (encryption off)") }
            let xts = blocks.filter { $0.purposeName.hasPrefix("XTS_AES_") }
            if xts.isEmpty { out.append("no key block with an XTS_AES purpose") }
            for k in xts {
                if !k.readProtected { out.append("\(map.blockNames[k.block]) (\(k.purposeName)) is not read-protected") }
                if !k.writeProtected { out.append("\(map.blockNames[k.block]) (\(k.purposeName)) is not write-protected") }
            }
            if job.mode == .host {
                let want: UInt64 = job.release ? 0b111 : 1
                if cnt != want { out.append("SPI_BOOT_CRYPT_CNT is \(cnt), the plan burns \(want)") }
            }
        }
        for name in job.finalBurn {
            guard let field = map.field(named: name), field.width <= 32 else { out.append("\(name) is not a field of the chip"); continue }
            let all = field.width == 32 ? UInt64(UInt32.max) : (UInt64(1) << UInt64(field.width)) - 1
            if cells.integer(field) != all { out.append("\(field.name) is not burned") }
        }
        for name in job.finalWriteProtect {
            let bit: Int?
            if let field = map.field(named: name) {
                bit = field.writeProtect ?? (field.block == 0 ? nil : map.blockWriteProtectBits[field.block])
            } else {
                bit = FieldMapBurnPlanner.block(named: name, map: map).flatMap { map.blockWriteProtectBits[$0] }
            }
            guard let bit else { out.append("\(name) has no write-protection bit"); continue }
            if !cells.isWriteProtected(bit: bit) { out.append("\(name.uppercased()) is not write-protected") }
        }
        return out
    }

    /// A `provisioned` record: every device-changing step finished ok, the final `record` step
    /// is the last one worked on, the eFuse summary is what the chip holds, the identity is the pool's.
    func provisionedRecordProblems(_ record: DeviceRecord, steps: [StepRecord], chip: Chip, identity: ClaimedIdentity?) -> [String] {
        var out: [String] = []
        var needed: [ProvisionStep] = [.identify, .preflight, .write, .firstBoot, .verify, .finalEFuses, .record]
        if job.claimsIdentities { needed += [.claim, .buildNVS] }
        for step in needed where !steps.contains(where: { $0.step == step.rawValue && $0.outcome == .ok }) {
            out.append("provisioned without an ok `\(step.rawValue)` step")
        }
        if let done = steps.first(where: { $0.step == ProvisionStep.record.rawValue && $0.outcome == .ok }) {
            let later = steps.filter { $0.id > done.id && $0.outcome != .skipped }
            if !later.isEmpty { out.append("steps worked on after the record step: \(later.map(\.step).joined(separator: ", "))") }
        }
        let chipSummary = chip.fieldMap.map { FieldMapSecurityFlow.summary(words: $0.shown, map: $0.map) }
            ?? Provisioner.efuseSummary(chip.efuses)
        if record.efuseSummary != chipSummary {
            out.append("the recorded eFuse summary is not what the chip holds")
        }
        if job.claimsIdentities {
            if identity == nil { out.append("provisioned without a claimed identity") }
            if record.identity != identity?.id { out.append("record identity \(record.identity ?? "-") ≠ pool claim \(identity?.id ?? "-")") }
        }
        if record.facts.manifestHash != job.manifestHash { out.append("manifest hash differs from the job's") }
        // The recorded image hashes are those of what the flash holds (signed images: the
        // signature may differ from run to run, the record must name the one written).
        let host = job.mode == .host
        let cipher = chip.cipher
        for image in job.images where image.offset + image.bytes.count <= chip.flash.count {
            guard let recorded = record.facts.imageHashes[image.name] else { out.append("no image hash recorded for \(image.name)"); continue }
            var raw = Array(chip.flash[image.offset..<image.offset + (image.bytes.count + 31) / 32 * 32])
            if host, encrypted(image.offset) {
                guard let plain = try? cipher?.decrypt(raw, at: image.offset) else { continue }
                raw = plain
            }
            let hash = SHA256.hash(data: raw[0..<image.bytes.count]).map { String(format: "%02x", $0) }.joined()
            if hash != recorded { out.append("the recorded hash of \(image.name) is not that of the image the flash holds") }
        }
        return out
    }

    // MARK: helpers

    static func readChip(_ folder: String) throws -> Chip {
        let store = DeviceStore(directory: folder)
        guard let desc = FileManager.default.contents(atPath: store.descriptionPath),
              let flash = FileManager.default.contents(atPath: store.flashPath),
              let efuse = FileManager.default.contents(atPath: store.efusePath) else {
            throw ProvisioningError(.connect, "\(folder): device.json, flash.bin or efuse.bin missing")
        }
        let description = try JSONDecoder().decode(DeviceDescription.self, from: desc)
        let mac = description.mac.lowercased()
        guard let virtualChip = VirtualChip.named(description.chip) else {
            let efuses = try EFuseArray(layout: .esp32, bytes: [UInt8](efuse))
            return Chip(folder: folder, mac: mac, chip: "esp32", flash: [UInt8](flash), efuses: efuses, fieldMap: nil,
                        flashKey: ESP32FlashKey.key(efuses), cipher: ESP32FlashKey.cipher(efuses))
        }
        // S3/C3: efuse.bin shows what the read registers show; the fuses of read-protected blocks
        // are in efuse-protected.bin (read here as files: DeviceStore.load() would tidy the folder).
        let map = virtualChip.efuseMap
        let shown = try EFuseVirtualFile.decode([UInt8](efuse), map: map, name: store.efusePath)
        var cells = shown
        let rdDis = map.field(named: "RD_DIS").map { shown.integer($0) } ?? 0
        let hidden = map.blockReadProtectBits.enumerated().compactMap { b, bit in bit.flatMap { rdDis & (1 << UInt64($0)) != 0 ? b : nil } }
        if !hidden.isEmpty {
            guard let protected = FileManager.default.contents(atPath: store.protectedEFusePath) else {
                throw ProvisioningError(.connect, "\(folder): blocks are read-protected but efuse-protected.bin is missing")
            }
            let words = try EFuseVirtualFile.decode([UInt8](protected), map: map, name: store.protectedEFusePath)
            for b in hidden { for w in 0..<map.blockWordCounts[b] { cells.setWord(b, w, words.word(b, w)) } }
        }
        let key = virtualChip.flashEncryptionKey(cells)
        let cipher = key.flatMap { k in ChipSpec.named(virtualChip.name).flatMap { try? FlashCipher(chip: $0, key: k) } }
        return Chip(folder: folder, mac: mac, chip: virtualChip.name, flash: [UInt8](flash), efuses: EFuseArray(layout: .esp32),
                    fieldMap: FieldMapFuses(map: map, shown: shown, cells: cells), flashKey: key, cipher: cipher)
    }

    /// The first `count` bytes of both are equal (memcmp: the audit reads megabytes per device).
    static func same(_ a: [UInt8], _ b: [UInt8], count: Int) -> Bool {
        guard a.count >= count, b.count >= count else { return false }
        return a.withUnsafeBytes { pa in b.withUnsafeBytes { pb in memcmp(pa.baseAddress!, pb.baseAddress!, count) == 0 } }
    }

    /// The first byte in `range` that is not 0xFF (erased), if any.
    static func firstNotErased(_ flash: [UInt8], _ range: Range<Int>) -> Int? {
        flash.withUnsafeBufferPointer { p -> Int? in
            var i = range.lowerBound
            // 8 bytes at a time, then the byte.
            while i + 8 <= range.upperBound {
                if UnsafeRawPointer(p.baseAddress! + i).loadUnaligned(as: UInt64.self) != .max { break }
                i += 8
            }
            while i < range.upperBound {
                if p[i] != 0xFF { return i }
                i += 1
            }
            return nil
        }
    }

    static func firstDifference(_ a: [UInt8], _ b: [UInt8]) -> Int {
        for i in 0..<min(a.count, b.count) where a[i] != b[i] { return i }
        return min(a.count, b.count)
    }

    /// `step: message` cut to its first clause, for grouping failures.
    static func reasonBucket(_ failure: String?) -> String {
        guard let failure, !failure.isEmpty else { return "(no reason)" }
        let first = failure.split(separator: "\n").first.map(String.init) ?? failure
        return first.count > 110 ? String(first.prefix(110)) + "…" : first
    }

    static func message(_ error: any Error) -> String {
        (error as? DiagnosticConvertible)?.diagnostic.message ?? String(describing: error)
    }

    static func files(under root: String) -> [String] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root, isDirectory: &isDir) else { return [] }
        guard isDir.boolValue else { return [root] }
        var out: [String] = []
        guard let walker = FileManager.default.enumerator(atPath: root) else { return [] }
        while let rel = walker.nextObject() as? String {
            let path = root + "/" + rel
            var st = stat()
            guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
            out.append(path)
        }
        return out.sorted()
    }
}

/// Finds any of a set of keys in bytes: raw (key-file order and eFuse-cell order), hex (lower
/// and upper case) and base64. A 24-bit bitmap of the first three bytes of every pattern
/// filters positions; candidates are compared in full. Reports labels, never the bytes.
struct KeyScan {
    struct Pattern { var bytes: [UInt8]; var label: String }
    var patterns: [Pattern] = []
    var bitmap = [UInt64](repeating: 0, count: (1 << 24) / 64)
    var byPrefix: [UInt32: [Int]] = [:]

    init(keys: [(label: String, bytes: [UInt8])]) {
        for (label, key) in keys {
            for (form, bytes) in Self.forms(key) {
                patterns.append(Pattern(bytes: bytes, label: "\(label) (\(form))"))
            }
        }
        for (i, p) in patterns.enumerated() where p.bytes.count >= 3 {
            let k = Self.prefix(p.bytes, 0)
            bitmap[Int(k >> 6)] |= 1 << UInt64(k & 63)
            byPrefix[k, default: []].append(i)
        }
    }

    static func forms(_ key: [UInt8]) -> [(String, [UInt8])] {
        let reversed = Array(key.reversed())
        func hex(_ b: [UInt8], upper: Bool) -> [UInt8] {
            Array(b.map { String(format: upper ? "%02X" : "%02x", $0) }.joined().utf8)
        }
        return [("raw", key), ("raw, reversed", reversed),
                ("hex", hex(key, upper: false)), ("HEX", hex(key, upper: true)),
                ("hex, reversed", hex(reversed, upper: false)), ("HEX, reversed", hex(reversed, upper: true)),
                ("base64", Array(Data(key).base64EncodedString().utf8)),
                ("base64, reversed", Array(Data(reversed).base64EncodedString().utf8))]
    }

    @inline(__always) static func prefix(_ b: [UInt8], _ i: Int) -> UInt32 {
        UInt32(b[i]) << 16 | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2])
    }

    /// Labels of the patterns found (once each).
    func find(in data: [UInt8]) -> [String] {
        guard data.count >= 3, !patterns.isEmpty else { return [] }
        var found = Set<Int>()
        data.withUnsafeBufferPointer { d in
            bitmap.withUnsafeBufferPointer { bits in
                var k = UInt32(d[0]) << 8 | UInt32(d[1])
                var i = 2
                let n = d.count
                while i < n {
                    k = (k << 8 | UInt32(d[i])) & 0xFF_FFFF
                    if bits[Int(k >> 6)] & (1 << UInt64(k & 63)) != 0 {
                        let start = i - 2
                        for p in byPrefix[k] ?? [] {
                            let bytes = patterns[p].bytes
                            if start + bytes.count <= n, d[start..<start + bytes.count].elementsEqual(bytes) { found.insert(p) }
                        }
                    }
                    i += 1
                }
            }
        }
        return found.sorted().map { patterns[$0].label }
    }
}
