import { LocalBus } from '../../../runtime/control/local/local-bus.ts'
import { busContract } from './bus-contract.ts'

let n = 0
busContract('local', { open: async () => new LocalBus(), prefix: () => `t${n++}` })
