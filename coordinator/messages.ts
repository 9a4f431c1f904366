/**
 * Control messages between the coordinator and workers, with their schemas. Every
 * message is validated on receipt; a malformed one is logged with its subject and dropped.
 */
import { z } from 'zod'

export const workerHello = z.object({
  v: z.literal(1),
  worker: z.string().min(1),
  pipeline: z.string().min(1),
  fingerprint: z.string().min(1),
})
export type WorkerHello = z.infer<typeof workerHello>

export const assignmentMessage = z.object({
  v: z.literal(1),
  generation: z.number().int().nonnegative(),
  /** actor id → worker id */
  actors: z.record(z.string()),
})
export type AssignmentMessage = z.infer<typeof assignmentMessage>

export const epochMessage = z.object({
  v: z.literal(1),
  epoch: z.number().int().positive(),
  generation: z.number().int().nonnegative(),
  finishedStages: z.array(z.string()),
})
export type EpochMessage = z.infer<typeof epochMessage>

export const epochAck = z.object({
  v: z.literal(1),
  actor: z.string(),
  epoch: z.number().int().nonnegative(),
})

export const actorFinished = z.object({
  v: z.literal(1),
  actor: z.string(),
  worker: z.string(),
})
