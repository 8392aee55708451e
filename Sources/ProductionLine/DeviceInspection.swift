import BootSimulator
import Foundation
import ESPCore
import EFuse
import VirtualDevice

private extension String {
    var nilIfEmpty: String? { isEmpty ? nil : self }
}

/// A virtual device summarized (`espforge device inspect`): chip, MAC, flash contents map,
/// security eFuses, and the power-on view predicted on a copy (the folder is not changed) by the
/// boot simulator under the sdkconfig remembered in the folder (else inferred from the device).
public struct DeviceInspection: Codable, Sendable {
    public var chip: String
    public var revision: String
    public var mac: String
    public var flashSize: Int
    public var flashID: String
    public var flashMap: [DeviceInspector.Region]
    public var security: [String: String]
    public var powerOn: PowerOnReport

    /// The eFuse fields the summary shows (besides BLOCK1…3, shown as empty or programmed).
    public static let securityFields = ["FLASH_CRYPT_CNT", "FLASH_CRYPT_CONFIG", "ABS_DONE_0", "ABS_DONE_1", "JTAG_DISABLE",
                                        "DISABLE_DL_ENCRYPT", "DISABLE_DL_DECRYPT", "DISABLE_DL_CACHE", "UART_DOWNLOAD_DIS",
                                        "CONSOLE_DEBUG_DISABLE", "WR_DIS", "RD_DIS", "CODING_SCHEME"]

    /// Inspects the device in `state`; `onInferred` is told the assumptions when no sdkconfig is remembered.
    public static func of(state: String, onInferred: ([String]) -> Void = { _ in }) throws -> DeviceInspection {
        let device = try DeviceStore(directory: state).load()
        let d = device.description
        if let chip = device.chip { return fieldMapChip(device, chip) }
        var security: [String: String] = [:]
        for f in DeviceInspector.fields(device.efuses) where securityFields.contains(f.name) { security[f.name] = f.value }
        for b in 1...3 {
            security["BLOCK\(b)"] = device.efuses.blocks[b].allSatisfy { $0 == 0 } ? "empty" : "programmed"
        }
        let (sdkconfig, assumptions) = try SDKConfig.rememberedOrInferred(inStateFolder: state, device: device)
        if let assumptions { onInferred(assumptions) }
        return DeviceInspection(chip: "ESP32-D0WD\(d.chipRevision >= 3 ? "-V3" : "")", revision: "v\(d.chipRevision).0",
                                mac: d.mac, flashSize: d.flashSize, flashID: NumberParsing.hex(d.flashID, width: 6),
                                flashMap: DeviceInspector.flashMap(device.flash), security: security,
                                powerOn: device.powerOn(using: BootSimulator(config: BootConfig(sdkconfig: sdkconfig))))
    }

    /// An ESP32-S3/C3: the field map's security state and the ROM's power-on view (no boot
    /// simulation for these chips yet).
    static func fieldMapChip(_ device: Device, _ chip: VirtualChip) -> DeviceInspection {
        let d = device.description
        let summary = EFuseFieldMapSummary(words: FieldMapController.readable(device.cells ?? EFuseBlockWords(map: chip.efuseMap),
                                                                               map: chip.efuseMap), map: chip.efuseMap)
        let s = summary.security
        var security: [String: String] = [
            "SECURE_BOOT_EN": s.secureBootEnabled ? "1" : "0",
            "SPI_BOOT_CRYPT_CNT": "0x" + String(s.spiBootCryptCnt, radix: 16),
            "DIS_DOWNLOAD_MANUAL_ENCRYPT": s.disDownloadManualEncrypt ? "1" : "0",
            "ENABLE_SECURITY_DOWNLOAD": s.enableSecurityDownload ? "1" : "0",
            "DIS_DOWNLOAD_MODE": s.disDownloadMode ? "1" : "0",
            "DIS_PAD_JTAG": s.disPadJTAG ? "1" : "0",
            "DIS_USB_JTAG": s.disUSBJTAG ? "1" : "0",
            "SECURE_BOOT_KEY_REVOKE": s.revokedDigestSlots.map(String.init).joined(separator: ",").nilIfEmpty ?? "none",
        ]
        for k in summary.keyBlocks {
            security["BLOCK_KEY\(k.index)"] = "\(k.purposeName), " + (k.readProtected ? "read-protected" : (k.empty ? "empty" : "programmed"))
        }
        return DeviceInspection(chip: chip.displayName, revision: summary.revision, mac: d.mac, flashSize: d.flashSize,
                                flashID: NumberParsing.hex(d.flashID, width: 6), flashMap: DeviceInspector.flashMap(device.flash),
                                security: security, powerOn: device.powerOn())
    }

    /// The summary as text, one item a line (no trailing newline).
    public var text: String {
        var lines = ["chip:      \(chip) (revision \(revision))", "MAC:       \(mac)",
                     "flash:     \(flashSize >> 20)MB, JEDEC id \(flashID)", "flash map:"]
        for r in flashMap { lines.append("  \(NumberParsing.hex(r.start))-\(NumberParsing.hex(r.end - 1))  \(r.kind)") }
        lines.append("security eFuses:")
        for (k, v) in security.sorted(by: { $0.key < $1.key }) { lines.append("  \(k.padding(toLength: 22, withPad: " ", startingAt: 0)) \(v)") }
        lines.append("power-on:  \(powerOn.detail)")
        return lines.joined(separator: "\n")
    }
}
