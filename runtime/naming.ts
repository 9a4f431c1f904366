/**
 * Names of what a pipeline creates on the pipe: topics, consumer groups, transactional ids,
 * and actor ids. Every process derives them the same way, so they are the contract between
 * workers, coordinators and tools like `weir status`.
 */
export const naming = {
  output: (pipeline: string, stage: string): string => `weir.${pipeline}.${stage}`,
  changelog: (pipeline: string, stage: string): string => `weir.${pipeline}.${stage}.changelog`,
  deadLetter: (pipeline: string, stage: string): string => `weir.${pipeline}.${stage}.dlq`,
  group: (pipeline: string, stage: string): string => `weir.${pipeline}.${stage}`,
  transactionalId: (pipeline: string, stage: string, partition: number): string => `weir.${pipeline}.${stage}.${partition}`,
  side: (pipeline: string, stage: string, side: string): string => `weir.${pipeline}.${stage}.side.${side}`,
  actor: (stage: string, partition: number): string => `${stage}/${partition}`,
}
