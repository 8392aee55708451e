import ESPCore

extension Provisioner {
    /// Provisions every target at once, each device on its own thread (``PortThreadExecutor``):
    /// a link that blocks in I/O, a slow first boot or a 30 s boot-watch timeout holds up its own
    /// device only, whatever the number of cores. `finished` runs for each result as its device
    /// ends (on that device's thread). Results come back in target order.
    public func provision(all targets: [any ProvisioningTarget],
                          finished: (@Sendable (ProvisionResult) async -> Void)? = nil) async -> [ProvisionResult] {
        await PortThreads.map(targets.map(\.port)) { i, _ in
            let result = await self.provision(targets[i])
            await finished?(result)
            return result
        }
    }
}

/// Which target a port name is.
public enum ProvisioningTargets {
    /// A plain `virtual:DIR` is a device folder driven in this process (boot simulator); anything
    /// else — a serial device, `socket://HOST:PORT`, or `virtual:DIR?…` (a virtual board on a
    /// serial line, with faults) — goes through the flasher's loader link.
    public static func target(for port: String, link: LoaderLinkOptions) -> any ProvisioningTarget {
        if port.hasPrefix("virtual:") && !port.contains("?") {
            return VirtualTarget(directory: String(port.dropFirst("virtual:".count)))
        }
        return LoaderTarget(port: port, options: link)
    }
}
