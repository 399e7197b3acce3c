// The constants of a one-step student's x0 formula, from a diffusers scheduler_config.json (docs/design/method.md):
//   epsilon:       x0 = (z - sqrt(1 - abar_T) eps) / sqrt(abar_T)
//   v_prediction:  x0 = sqrt(abar_T) z - sqrt(1 - abar_T) v
//   sample:        x0 = the prediction
// abar_t = prod_{i <= t} (1 - beta_i), computed in float64 as trainer/diffusion.py does (diffusers computes the
// betas in float32; the difference is far below float32 resolution of the coefficients).

export type Parameterization = 'eps' | 'v' | 'x0';

/** The scheduler_config.json keys that matter here, with diffusers' defaults. */
export interface SchedulerConfig {
  num_train_timesteps?: number;
  beta_start?: number;
  beta_end?: number;
  beta_schedule?: string;
  prediction_type?: string;
  trained_betas?: number[] | null;
  rescale_betas_zero_snr?: boolean;
}

export interface OneStepSchedule {
  parameterization: Parameterization;
  /** The timestep the student is called at: num_train_timesteps - 1 (999) unless given. */
  timestep: number;
  alphaBar: number;
}

const PARAMETERIZATIONS: Record<string, Parameterization> = { epsilon: 'eps', v_prediction: 'v', sample: 'x0' };

/** diffusers' defaults (DDPMScheduler, EulerDiscreteScheduler). */
const DEFAULTS = { num_train_timesteps: 1000, beta_start: 0.0001, beta_end: 0.02, beta_schedule: 'linear', prediction_type: 'epsilon' };

function linspace(start: number, end: number, count: number): number[] {
  return Array.from({ length: count }, (_, index) => (count === 1 ? start : start + ((end - start) * index) / (count - 1)));
}

/** The beta schedule of the config, one beta per training timestep. */
export function betas(config: SchedulerConfig): number[] {
  const count = config.num_train_timesteps ?? DEFAULTS.num_train_timesteps;
  const start = config.beta_start ?? DEFAULTS.beta_start;
  const end = config.beta_end ?? DEFAULTS.beta_end;
  if (config.trained_betas !== undefined && config.trained_betas !== null) return [...config.trained_betas];
  const schedule = config.beta_schedule ?? DEFAULTS.beta_schedule;
  switch (schedule) {
    case 'linear':
      return linspace(start, end, count);
    case 'scaled_linear':
      return linspace(Math.sqrt(start), Math.sqrt(end), count).map((root) => root * root);
    case 'squaredcos_cap_v2': {
      const alphaBar = (t: number) => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
      return Array.from({ length: count }, (_, i) => Math.min(1 - alphaBar((i + 1) / count) / alphaBar(i / count), 0.999));
    }
    default:
      throw new Error(`scheduler beta_schedule ${JSON.stringify(schedule)} is not supported (linear, scaled_linear, squaredcos_cap_v2)`);
  }
}

export function oneStepSchedule(config: SchedulerConfig, timestep?: number): OneStepSchedule {
  const predictionType = config.prediction_type ?? DEFAULTS.prediction_type;
  const parameterization = PARAMETERIZATIONS[predictionType];
  if (parameterization === undefined) {
    throw new Error(`scheduler prediction_type ${JSON.stringify(predictionType)} is not supported (${Object.keys(PARAMETERIZATIONS).join(', ')})`);
  }
  if (config.rescale_betas_zero_snr) throw new Error('scheduler rescale_betas_zero_snr (zero terminal SNR) is not supported');
  const schedule = betas(config);
  const step = timestep ?? schedule.length - 1;
  if (!Number.isInteger(step) || step < 0 || step >= schedule.length) throw new Error(`timestep ${step} is outside 0..${schedule.length - 1}`);
  let alphaBar = 1;
  for (let t = 0; t <= step; t++) alphaBar *= 1 - schedule[t]!;
  return { parameterization, timestep: step, alphaBar };
}
